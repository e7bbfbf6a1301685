import re,sys,collections
d=collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    m=re.match(r'(\S+)\s+(\S+)\s+64 B mrg=1 (\S+) .*round trip (\d+) ns, (\d+) ns after.*?: ([\d.]+) Mpps',line)
    if not m: continue
    lab,dr,ring,a,b,mpps=m.groups(); a=int(a); b=int(b)
    pl='near' if a<150 and b<150 else ('far' if a>=150 and b>=150 else 'moved')
    d[(dr,ring,pl)][lab].append(float(mpps))
for k in sorted(d):
    print(k, {l:(sorted(v)) for l,v in d[k].items()})
