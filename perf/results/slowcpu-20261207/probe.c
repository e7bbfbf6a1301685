#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdlib.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){ size_t n=(argc>1?atol(argv[1]):256)*1024; char*a=aligned_alloc(4096,n),*b=aligned_alloc(4096,n); memset(a,1,n); memset(b,2,n);
 double best=1e9; for(int r=0;r<5;r++){ double t0=now(); for(int k=0;k<2000;k++){ memcpy(b,a,n); a[k%n]^=b[(k*64)%n]; } double t=(now()-t0)/(2000.0*n/64)*1e9; if(t<best)best=t; }
 printf("%.3f", best); return 0;}
