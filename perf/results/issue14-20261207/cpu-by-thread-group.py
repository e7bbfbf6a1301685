import json, sys, re, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
def group(k):
    comm, pid, tid, name = k.split(':', 3)
    if comm == 'ceph-osd': return 'osd'
    if comm == 'ceph-mon': return 'mon'
    if comm == 'qemu-nbd': return 'server'
    side = 'qsd' if comm.startswith('qemu-storage') else 'jvh'
    if name.startswith('msgr-worker') or name.startswith('io_context_pool') or name in ('safe_timer','fn_anonymous','ms_dispatch','ms_local','taskfin_librbd','admin_socket','service','log','signal_handler','finisher') or 'librbd' in name or 'rados' in name:
        return side+':librados'
    if side == 'qsd': return 'qsd:own'
    if 'poller' in name: return 'jvh:own'
    if name == 'blk-load': return 'frontend'
    return 'jvh:other'
phases = collections.defaultdict(lambda: collections.Counter()); n = collections.Counter()
prev = None
for t, snap in rows:
    if prev:
        dt = t - prev[0]
        g = collections.Counter()
        for k, v in snap.items():
            if k in prev[1]:
                d = v - prev[1][k]
                if d > 0: g[group(k)] += d / dt
        if g['frontend'] > 0.9:
            side = 'qsd' if g['qsd:own'] + g['qsd:librados'] > 0.05 else ('jvh' if g['jvh:own'] > 0.02 else None)
            if side:
                phases[side].update(g); n[side] += 1
    prev = (t, snap)
for side in phases:
    print(side, n[side], 'samples:', ' '.join(f"{k}={v/n[side]:.3f}" for k, v in sorted(phases[side].items()) if v/n[side] > 0.005))
