# usage: asmmap.py OUTDIR [top]  -- attributes sampled IPs to printed instructions
import re,sys,collections
out=sys.argv[1]; top=int(sys.argv[2]) if len(sys.argv)>2 else 60
ips={}
tot=0
for l in open(out+'/ips.txt'):
    c,ip=l.split(); ips[int(ip,16)]=int(c); tot+=int(c)
# parse assembly: blocks start at "Compiled method" lines; lines "  0x...: insn"
ins={}  # addr -> (text, method, ctxcomment)
method=None; last_comment=''
for l in open(out+'/bench.txt',errors='replace'):
    if l.startswith('Compiled method') or l.startswith('============================= C2'):
        pass
    m=re.match(r'\s*#\s+\{method\}.*?\'(\S+)\'.*?in \'(\S+)\'',l)
    if m: method=m.group(2).split('/')[-1]+'::'+m.group(1)
    m=re.match(r'\s+(0x[0-9a-f]+):\s+(.*)',l)
    if m:
        a=int(m.group(1),16); txt=m.group(2).strip()
        ins[a]=(txt,method)
    elif ';*' in l or '; - ' in l:
        pass
rows=[]
for a,c in ips.items():
    if a in ins: rows.append((c,a,ins[a][0],ins[a][1]))
rows.sort(reverse=True)
cov=sum(r[0] for r in rows)
print('samples',tot,'attributed',cov)
for c,a,t,mth in rows[:top]:
    print(f'{100*c/tot:5.1f}% {a:x} {mth} | {t[:110]}')
