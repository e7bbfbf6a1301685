package io.jvhost.perf;

import io.jvhost.testkit.HostCommands;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.ring.QueueCounters;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.net.NetDevice;
import io.jvhost.net.TapPort;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A real guest's TCP throughput through a TAP: iperf3 in a QEMU guest (TCG) against iperf3 on the
 * TAP's other side, both directions, with jvhost ({@code --tap}, offloads on and with
 * {@code --no-offload}) and with QEMU's own userspace virtio-net on the same kind of TAP
 * ({@code -netdev tap,vhost=off}, offloads on, as its users run it). Sides alternate per round.
 *
 * <p>Each run boots one guest. The TAP is created in this network namespace, attached by the
 * backend, then moved into a namespace of the bench's own with a link-local address, where the
 * iperf3 server runs: no traffic leaves the machine. jvhost's guest has {@code vectors=0} (QEMU 7.2
 * under TCG crashes on MSI-X for vhost-user-net); QEMU's tap NIC keeps MSI-X, and the
 * {@code qemu-tap-intx} side shows it with {@code vectors=0} too, like for like.
 */
public final class TcpBench extends Bench<TcpBench.Options> {
    private static final Pattern RECEIVER = Pattern.compile("([0-9.]+) ([KMG]?)bits/sec\\s+receiver");
    private static final String NS = "jvhost-bench-tcp", TAP = "jvbench-tcp0";
    private static final String HOST_IP = "169.254.88.1", GUEST_IP = "169.254.88.2";
    static final String MAC = "52:54:00:00:00:88";

    /** What to run; fields as the CLI fills them. */
    public static final class Options extends BenchOptions {
        public List<String> sides = List.of("jvhost", "jvhost-no-offload", "qemu-tap");
        /** jvhost's idle mode: adaptive, as the CLI runs it unless told otherwise ({@code jvhost-event} is event mode whatever this says). */
        public IdleMode idle = IdleMode.ADAPTIVE;
        /** Call coalescing on jvhost's queues, as {@code --coalesce-frames/--coalesce-usecs} (0 frames: off, the CLI's default). */
        public int coalesceFrames;
        public long coalesceUsecs = 50;

        public Options() {
            super(8);
            queues = List.of(1);
        }

        /** One short run per side. */
        public static Options quick() {
            Options o = new Options();
            o.quick(0);
            o.seconds = 3;
            return o;
        }
    }

    /** One run: Mbit/s the receiver counted, guest to host and host to guest, and what each window cost. */
    record Run(double toHost, double toGuest, String error, Window up, Window down) {}

    /**
     * What one iperf3 window cost, from a {@link Probe} before and after it: interrupts the guest
     * took, its NIC's bytes per packet in the data direction, CPU of QEMU's threads and jvhost's
     * poller, jvhost's calls and kicks (NaN where a side has no such thing).
     */
    record Window(double megabytes, double irqsPerMb, double bytesPerPacket, double vcpuPercent, double mainPercent,
                  double pollerPercent, double callsPerMb, double kicksPerMb) {
        static Window between(Probe a, Probe b, boolean toHost) {
            long bytes = toHost ? b.txBytes - a.txBytes : b.rxBytes - a.rxBytes;
            long packets = toHost ? b.txPackets - a.txPackets : b.rxPackets - a.rxPackets;
            double mb = bytes / 1e6, wall = b.nanos - a.nanos;
            return new Window(mb, (b.irqs - a.irqs) / mb, packets == 0 ? Double.NaN : (double) bytes / packets,
                    percent(b.vcpuNanos - a.vcpuNanos, wall), percent(b.mainNanos - a.mainNanos, wall),
                    a.pollerNanos < 0 || b.pollerNanos < 0 ? Double.NaN : percent(b.pollerNanos - a.pollerNanos, wall),
                    a.calls < 0 ? Double.NaN : (b.calls - a.calls) / mb, a.kicks < 0 ? Double.NaN : (b.kicks - a.kicks) / mb);
        }

        private static double percent(long nanos, double wall) {
            return nanos < 0 ? Double.NaN : 100.0 * nanos / wall;
        }

        @Override
        public String toString() {
            return String.format("%.0f irqs/MB, %.0f B/pkt, vCPU %.0f%%, main %.0f%%, poller %.0f%%, %.0f calls/MB, %.0f kicks/MB",
                    irqsPerMb, bytesPerPacket, vcpuPercent, mainPercent, pollerPercent, callsPerMb, kicksPerMb);
        }
    }

    /**
     * Counters read at one moment: the guest's virtio interrupts and eth0 statistics, QEMU's vCPU
     * and main-loop thread CPU, jvhost's poller CPU and its queues' calls and kicks (-1: no jvhost).
     */
    record Probe(long nanos, long irqs, long txPackets, long txBytes, long rxPackets, long rxBytes, long vcpuNanos,
                 long mainNanos, long pollerNanos, long calls, long kicks) {
        /** The guest's side of a probe: its virtio lines of /proc/interrupts, then eth0's four counters. */
        static final String GUEST_COMMAND = "grep virtio /proc/interrupts; cd /sys/class/net/eth0/statistics"
                + " && echo stats $(cat tx_packets tx_bytes rx_packets rx_bytes)";

        static Probe take(QemuGuest guest, Backend backend, CpuTime.Meter poller) {
            long now = System.nanoTime();
            long[] threads = qemuThreads(guest.pid());
            long calls = -1, kicks = -1;
            if (backend != null) {
                calls = 0;
                kicks = 0;
                for (int i = 0; i < backend.queueCount(); i++) {
                    QueueCounters c = backend.queue(i).counters();
                    calls += c.notificationsSent;
                    kicks += c.kicks;
                }
            }
            long pollerNanos = poller.nanos();
            String out = guest.exec(GUEST_COMMAND, Duration.ofSeconds(30)).output();
            long[] stats = guestStats(out);
            return new Probe(now, guestIrqs(out), stats[0], stats[1], stats[2], stats[3], threads[0],
                    threads[1], pollerNanos, calls, kicks);
        }
    }

    /** The interrupts on the guest's virtio lines of {@code /proc/interrupts} (one vCPU: the first count). */
    static long guestIrqs(String interrupts) {
        long n = 0;
        for (String line : interrupts.split("\\n")) {
            String[] f = line.trim().split("\\s+");
            if (line.contains("virtio") && f.length > 1 && f[0].endsWith(":") && f[1].matches("[0-9]+")) {
                n += Long.parseLong(f[1]);
            }
        }
        return n;
    }

    /** tx_packets, tx_bytes, rx_packets, rx_bytes from the probe's {@code stats} line; zeros when absent. */
    static long[] guestStats(String output) {
        Matcher m = Pattern.compile("stats ([0-9]+) ([0-9]+) ([0-9]+) ([0-9]+)").matcher(output);
        long[] v = new long[4];
        if (m.find()) {
            for (int i = 0; i < 4; i++) {
                v[i] = Long.parseLong(m.group(i + 1));
            }
        }
        return v;
    }

    /**
     * CPU time so far of QEMU's TCG vCPU threads ({@code CPU n/TCG}: QEMU names its threads only
     * with {@code -name ...,debug-threads=on}, which every side of the bench gets) and of its main
     * thread (the main loop: timers, bottom halves, the TAP and eventfd handlers), in nanoseconds;
     * -1 each when unreadable.
     */
    static long[] qemuThreads(long pid) {
        long vcpu = 0, main = -1;
        try (var tasks = Files.list(Path.of("/proc", Long.toString(pid), "task"))) {
            for (Path t : tasks.toList()) {
                try {
                    long ticks = CpuTime.statTicks(Files.readString(t.resolve("stat")));
                    if (t.getFileName().toString().equals(Long.toString(pid))) {
                        main = CpuTime.ticksToNanos(ticks);
                    } else if (Files.readString(t.resolve("comm")).contains("/TCG")) {
                        vcpu += CpuTime.ticksToNanos(ticks);
                    }
                } catch (IOException | IllegalArgumentException e) {
                    // a thread that ended meanwhile
                }
            }
        } catch (IOException e) {
            return new long[] {-1, -1};
        }
        return new long[] {vcpu, main};
    }

    private TcpBench(Options options, PrintStream out) throws IOException {
        super("tcp", options, out);
    }

    public static Report run(Options options, PrintStream out) throws Exception {
        return new TcpBench(options, out).runAll();
    }

    /** What is missing for this benchmark: QEMU and a guest image, iperf3, ip. */
    public static List<String> missing() {
        List<String> missing = new ArrayList<>(GuestImage.missingHostPackages());
        if (!Files.isExecutable(Path.of("/usr/bin/iperf3"))) {
            missing.add("iperf3");
        }
        if (!Files.isExecutable(Path.of("/usr/bin/ip")) && !Files.isExecutable(Path.of("/sbin/ip"))) {
            missing.add("iproute2");
        }
        return missing;
    }

    private Report runAll() throws Exception {
        List<String> missing = missing();
        if (!missing.isEmpty()) {
            throw new IllegalStateException("bench tcp needs: apt-get install " + String.join(" ", missing));
        }
        Report report = report("tcp", "iperf3 in a QEMU 7.2 guest (TCG), iperf3 -s on the TAP's side",
                "dir", "backend", "Mbit/s", "min", "max", "spread%", "runs", "vs_qemu_tap", "vs_no_offload", "errors",
                "irqs/MB", "pkt_B", "vcpu%", "qemu_main%", "poller%", "calls/MB", "kicks/MB");
        report.meta("seconds_per_run", Integer.toString(options.seconds));
        report.meta("qemu_extra", "-name jvbench,debug-threads=on on every side (names QEMU's threads, for the vcpu% column)");
        report.meta("jvhost_idle", options.idle.name().toLowerCase(java.util.Locale.ROOT));
        report.meta("jvhost_coalescing", options.coalesceFrames == 0 ? "off"
                : options.coalesceFrames + " frames, " + options.coalesceUsecs + " us");
        report.meta("columns", "medians over the runs, of each run's iperf3 window: irqs/MB the guest's virtio interrupts"
                + " (/proc/interrupts) per MB moved; pkt_B bytes per packet of the guest's eth0 in the data direction"
                + " (a GSO segment counts once); vcpu% and qemu_main% QEMU's TCG vCPU thread and main-loop thread"
                + " CPU time per wall time; poller% jvhost's poller thread; calls/MB and kicks/MB jvhost's call"
                + " eventfd writes and guest kicks, both queues");
        List<String> sides = options.sides;
        List<List<Run>> runs;
        try (ControlLoop loop = new ControlLoop()) {
            runs = Rounds.alternate(sides.size(), options.runs, (s, r) -> {
                Run run = runOnce(loop, sides.get(s));
                out.printf("  %-18s run %d: %s%n", sides.get(s), r + 1, run.error != null ? "FAILED " + run.error
                        : String.format("guest->host %.0f Mbit/s (%s), host->guest %.0f Mbit/s (%s)", run.toHost,
                                run.up, run.toGuest, run.down));
                return run;
            });
        }
        for (String dir : List.of("g2h", "h2g")) {
            double[] qemu = values(runs, sides.indexOf("qemu-tap"), dir);
            double[] plain = values(runs, sides.indexOf("jvhost-no-offload"), dir);
            for (int s = 0; s < sides.size(); s++) {
                double[] v = values(runs, s, dir);
                double med = Report.median(v), min = Report.min(v), max = Report.max(v);
                boolean jvhost = sides.get(s).equals("jvhost");
                List<Window> w = windows(runs, s, dir);
                report.add(dir, sides.get(s), med, min, max, (max - min) / med * 100, v.length,
                        jvhost && qemu.length > 0 ? Report.pairedRatio(v, qemu) : Double.NaN,
                        jvhost && plain.length > 0 ? Report.pairedRatio(v, plain) : Double.NaN,
                        runs.get(s).stream().filter(x -> x.error != null).count(),
                        median(w, Window::irqsPerMb), median(w, Window::bytesPerPacket), median(w, Window::vcpuPercent),
                        median(w, Window::mainPercent), median(w, Window::pollerPercent), median(w, Window::callsPerMb),
                        median(w, Window::kicksPerMb));
            }
        }
        return finish(report);
    }

    private static List<Window> windows(List<List<Run>> runs, int side, String dir) {
        return runs.get(side).stream().map(r -> dir.equals("g2h") ? r.up : r.down).filter(w -> w != null).toList();
    }

    private static double median(List<Window> windows, java.util.function.ToDoubleFunction<Window> f) {
        double[] v = windows.stream().mapToDouble(f).filter(x -> !Double.isNaN(x)).toArray();
        return v.length == 0 ? Double.NaN : Report.median(v);
    }

    private static double[] values(List<List<Run>> runs, int side, String dir) {
        if (side < 0) {
            return new double[0];
        }
        return runs.get(side).stream().mapToDouble(r -> dir.equals("g2h") ? r.toHost : r.toGuest).toArray();
    }

    private Run runOnce(ControlLoop loop, String side) throws Exception {
        int n = nextRun();
        cleanUp();
        Process server = null;
        try {
            HostCommands.run("ip", "netns", "add", NS);
            Backend backend = null;
            VhostUserServer vhost = null;
            TapPort tap = null;
            List<String> nic;
            CpuTime.Meter poller = CpuTime.Meter.NONE;
            if (side.startsWith("jvhost")) {
                boolean offloads = !side.equals("jvhost-no-offload");
                IdleMode idle = side.equals("jvhost-event") ? IdleMode.EVENT : options.idle;
                tap = new TapPort(TAP, 1);
                NetDevice device = new NetDevice(tap, 1, 0x525400000088L, 1500, offloads);
                backend = new Backend("tcp" + n, device, new BackendOptions(idle, null, null, options.coalesceFrames,
                        options.coalesceUsecs), loop);
                backend.start();
                poller = CpuTime.threads("tcp" + n + "-poller-");
                vhost = VhostUserServer.listen(work.resolve("tcp-" + n + ".sock"), backend, loop);
                nic = QemuConfigs.deviceArgs("net-qemu.sh", vhost.path().toString(), MAC, "1");
                procs.note("# run " + n + ": ./jvhost net --tap " + TAP + (offloads ? "" : " --no-offload")
                        + (idle == IdleMode.ADAPTIVE ? "" : " --idle " + idle.name().toLowerCase(java.util.Locale.ROOT))
                        + (options.coalesceFrames == 0 ? "" : " --coalesce-frames " + options.coalesceFrames
                                + " --coalesce-usecs " + options.coalesceUsecs)
                        + " --socket S; guest: qemu-configs/net-qemu.sh S " + MAC + " 1");
            } else {
                HostCommands.run("ip", "tuntap", "add", "dev", TAP, "mode", "tap", "vnet_hdr");
                nic = List.of("-netdev", "tap,id=t0,ifname=" + TAP + ",script=no,downscript=no,vhost=off",
                        "-device", "virtio-net-pci,netdev=t0,mac=" + MAC + (side.equals("qemu-tap-intx") ? ",vectors=0" : ""));
                procs.note("# run " + n + ": qemu-system-x86_64 ... " + String.join(" ", nic));
            }
            List<String> qemuArgs = new ArrayList<>(List.of("-name", "jvbench,debug-threads=on")); // names the vCPU thread "CPU 0/TCG"
            qemuArgs.addAll(nic);
            try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).memoryMib(512).cpus(1)
                    .extraArgs(qemuArgs).logFile(work.resolve("tcp-" + n + "-" + side + ".log")).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                HostCommands.run("ip", "link", "set", TAP, "netns", NS);
                HostCommands.run("ip", "netns", "exec", NS, "ip", "addr", "add", HOST_IP + "/24", "dev", TAP);
                HostCommands.run("ip", "netns", "exec", NS, "ip", "link", "set", TAP, "up");
                server = new ProcessBuilder("ip", "netns", "exec", NS, "iperf3", "-s", "-B", HOST_IP)
                        .redirectErrorStream(true).redirectOutput(work.resolve("iperf3-server-" + n + ".log").toFile()).start();
                guest.exec("ip link set eth0 up && ip addr add " + GUEST_IP + "/24 dev eth0 && ping -c 1 -W 5 " + HOST_IP,
                        Duration.ofMinutes(1));
                procs.note("# run " + n + " guest features, virtio_net napi_tx: " + guest.exec(
                        "cat /sys/bus/virtio/devices/*/features /sys/module/virtio_net/parameters/napi_tx | tr '\\n' ' '",
                        Duration.ofSeconds(30)).output().strip());
                String t = Integer.toString(options.seconds);
                Probe p0 = Probe.take(guest, backend, poller);
                QemuGuest.Result up = guest.exec("iperf3 -c " + HOST_IP + " -t " + t + " -f m", Duration.ofMinutes(2));
                Probe p1 = Probe.take(guest, backend, poller);
                QemuGuest.Result down = guest.exec("iperf3 -c " + HOST_IP + " -t " + t + " -f m -R", Duration.ofMinutes(2));
                Probe p2 = Probe.take(guest, backend, poller);
                guest.quit(Duration.ofSeconds(60));
                double toHost = mbits(up.output()), toGuest = mbits(down.output());
                Window w1 = Window.between(p0, p1, true), w2 = Window.between(p1, p2, false);
                procs.note("# run " + n + " guest->host: " + w1 + "; host->guest: " + w2);
                return Double.isNaN(toHost) || Double.isNaN(toGuest)
                        ? new Run(toHost, toGuest, "iperf3: " + up.output() + down.output(), w1, w2)
                        : new Run(toHost, toGuest, null, w1, w2);
            } finally {
                if (vhost != null) {
                    vhost.close();
                }
                if (backend != null) {
                    backend.close();
                }
                if (tap != null) {
                    tap.close();
                }
            }
        } finally {
            if (server != null) {
                Procs.stop(server, 10);
            }
            cleanUp();
        }
    }

    /** Megabits per second iperf3's receiver counted; NaN when it printed none. */
    static double mbits(String iperf) {
        Matcher m = RECEIVER.matcher(iperf);
        if (!m.find()) {
            return Double.NaN;
        }
        double v = Double.parseDouble(m.group(1));
        return switch (m.group(2)) {
            case "G" -> v * 1000;
            case "K" -> v / 1000;
            case "" -> v / 1_000_000;
            default -> v;
        };
    }

    private static void cleanUp() throws IOException, InterruptedException {
        new ProcessBuilder("ip", "netns", "delete", NS).start().waitFor(10, TimeUnit.SECONDS);
        new ProcessBuilder("ip", "link", "delete", TAP).start().waitFor(10, TimeUnit.SECONDS);
    }

}
