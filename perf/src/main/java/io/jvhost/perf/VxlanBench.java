package io.jvhost.perf;

import io.jvhost.core.sys.TapInterface;
import io.jvhost.net.L2Switch;
import io.jvhost.net.NetDevice;
import io.jvhost.net.VxlanPort;
import io.jvhost.testkit.HostCommands;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * VXLAN encapsulation and decapsulation: the switch's {@link VxlanPort} against a Linux
 * {@code vxlan} link in a bridge, same frames, same veth underlay, alternated. Reported per CPU
 * core (frames per CPU-second of every thread doing the work, kernel time in their context
 * included) as well as per wall second.
 *
 * <ul>
 * <li>encap, jvhost: a thread hands frames to the port as a guest's poller would ({@code send}),
 *   which sends each from that thread (sendmmsg: the VXLAN header and the frame where it lies) over
 *   a veth to a namespace where nothing listens. CPU: that thread, and the port's receiving thread
 *   (idle here).
 * <li>encap, Linux: a thread writes the frames to a TAP bridged with {@code vx0}; the kernel
 *   bridges, encapsulates and sends them in that thread's context. CPU: that thread.
 * <li>decap: {@link UdpBlaster} in the far namespace sends VXLAN datagrams over the veth; the
 *   port's thread takes them (recvmmsg), checks, learns and forwards them into the switch to a NIC whose
 *   guest never reads (as the Linux bridge forwards to a TAP nobody reads). CPU: the blaster's
 *   thread (the veth's receive side runs in it) and, for jvhost, the port's thread.
 * </ul>
 * Every address is link-local on veth pairs in namespaces the bench creates and deletes.
 */
public final class VxlanBench extends Bench<VxlanBench.Options> {
    private static final String NS_LINUX = "jvhost-bvx-l", NS_SINK = "jvhost-bvx-s";
    private static final String TAP = "jvbvx-tap";
    private static final int VNI = 4242, PORT = 4789;
    private static final String J_LOCAL = "169.254.93.1", J_REMOTE = "169.254.93.2";
    private static final String L_LOCAL = "169.254.94.1", L_REMOTE = "169.254.94.2";
    private static final Pattern BLASTER = Pattern.compile("sent (\\d+) errors (\\d+) cpu_ns (\\d+)");

    /** What to run; fields as the CLI fills them. */
    public static final class Options extends BenchOptions {
        public List<Integer> sizes = List.of(64, 1518);
        public List<String> directions = List.of("encap", "decap");

        public Options() {
            super(3);
            queues = List.of(1);
        }

        public static Options quick() {
            Options o = new Options();
            o.quick(0);
            o.sizes = List.of(64);
            return o;
        }
    }

    /** One run: frames moved, their rate, and the CPU-nanoseconds spent per frame. */
    record Run(double mfps, double mfpsPerCore, double cpuNsPerFrame, String error) {}

    /** In br0 beside vx0: written to for encap, never read (frames for it queue, then drop) for decap. */
    private TapInterface tap;

    private VxlanBench(Options options, PrintStream out) throws IOException {
        super("vxlan", options, out);
    }

    public static Report run(Options options, PrintStream out) throws Exception {
        return new VxlanBench(options, out).runAll();
    }

    private Report runAll() throws Exception {
        Report report = report("vxlan", "a thread of the bench's (encap); UdpBlaster in a namespace (decap)",
                "dir", "frame", "side", "Mfps", "Mfps/core", "cpu_ns/frame", "min/core", "max/core", "runs",
                "vs_linux/core", "errors");
        try {
            setUp();
            for (String dir : options.directions) {
                for (int size : options.sizes) {
                    List<String> sides = List.of("jvhost", "linux");
                    List<List<Run>> runs = Rounds.alternate(2, options.runs, (s, r) -> {
                        Run run = once(dir, size, sides.get(s));
                        out.printf("  %s %4d B %-6s run %d: %s%n", dir, size, sides.get(s), r + 1, run.error != null
                                ? "FAILED " + run.error : String.format("%.3f Mfps, %.3f Mfps per core, %.0f CPU ns/frame",
                                run.mfps, run.mfpsPerCore, run.cpuNsPerFrame));
                        return run;
                    });
                    double[] linux = runs.get(1).stream().mapToDouble(Run::mfpsPerCore).toArray();
                    for (int s = 0; s < 2; s++) {
                        List<Run> rs = runs.get(s);
                        double[] perCore = rs.stream().mapToDouble(Run::mfpsPerCore).toArray();
                        report.add(dir, size, sides.get(s), Report.median(rs.stream().mapToDouble(Run::mfps).toArray()),
                                Report.median(perCore), Report.median(rs.stream().mapToDouble(Run::cpuNsPerFrame).toArray()),
                                Report.min(perCore), Report.max(perCore), rs.size(),
                                s == 0 ? Report.pairedRatio(perCore, linux) : Double.NaN,
                                rs.stream().filter(x -> x.error != null).count());
                    }
                }
            }
        } finally {
            tearDown();
        }
        return finish(report);
    }

    private Run once(String dir, int size, String side) throws Exception {
        return switch (dir + "/" + side) {
            case "encap/jvhost" -> encapJvhost(size);
            case "encap/linux" -> encapLinux(size);
            case "decap/jvhost" -> decapJvhost(size);
            case "decap/linux" -> decapLinux(size);
            default -> throw new IllegalArgumentException("direction " + dir);
        };
    }

    // ---- set-up: two veth underlays into the sink namespace, a Linux vxlan link in a bridge -------

    private void setUp() throws Exception {
        tearDown();
        run("ip", "netns", "add", NS_LINUX);
        run("ip", "netns", "add", NS_SINK);
        run("ip", "link", "add", "jvbvx-j", "type", "veth", "peer", "name", "jvbvx-js", "netns", NS_SINK);
        run("ip", "addr", "add", J_LOCAL + "/30", "dev", "jvbvx-j");
        run("ip", "link", "set", "jvbvx-j", "up");
        run("ip", "link", "add", "jvbvx-l", "netns", NS_LINUX, "type", "veth", "peer", "name", "jvbvx-ls", "netns", NS_SINK);
        in(NS_SINK, "ip link set lo up && ip addr add " + J_REMOTE + "/30 dev jvbvx-js && ip link set jvbvx-js up"
                + " && ip addr add " + L_REMOTE + "/30 dev jvbvx-ls && ip link set jvbvx-ls up");
        in(NS_LINUX, "ip link set lo up && ip addr add " + L_LOCAL + "/30 dev jvbvx-l && ip link set jvbvx-l up"
                + " && ip link add vx0 type vxlan id " + VNI + " dstport " + PORT + " remote " + L_REMOTE + " local " + L_LOCAL
                + " && ip link add br0 type bridge && ip link set vx0 master br0 && ip link set vx0 up && ip link set br0 up");
        tap = TapInterface.open(TAP, 1);
        run("ip", "link", "set", TAP, "netns", NS_LINUX);
        in(NS_LINUX, "ip link set " + TAP + " master br0 && ip link set " + TAP + " up");
    }

    private void tearDown() throws Exception {
        if (tap != null) {
            tap.close();
            tap = null;
        }
        HostCommands.deleteNamespace(NS_LINUX);
        HostCommands.deleteNamespace(NS_SINK);
        new ProcessBuilder("ip", "link", "delete", "jvbvx-j").start().waitFor();
    }

    private void run(String... cmd) throws Exception {
        procs.note(String.join(" ", cmd));
        HostCommands.run(cmd);
    }

    private String in(String ns, String cmd) throws Exception {
        procs.note("ip netns exec " + ns + " sh -c '" + cmd + "'");
        return HostCommands.runIn(ns, cmd);
    }

    /** A frame to a MAC nobody has (it floods to the tunnel), from a fixed one, ethertype 0x88B5 (not IP: no bridge netfilter check). */
    private static MemorySegment frame(int size) {
        MemorySegment f = Arena.ofAuto().allocate(size, 64);
        f.copyFrom(MemorySegment.ofArray(new byte[] {0x52, 0x54, 0, 0x0b, 0x0b, 0x0b, 0x52, 0x54, 0, 0x0a, 0x0a, 0x0a, (byte) 0x88, (byte) 0xB5}));
        return f;
    }

    private static long threadCpu(long tid) {
        return ManagementFactory.getThreadMXBean().getThreadCpuTime(tid);
    }

    /** The port's receiving thread. */
    private static long portThread() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals("jvhost-vxlan"))
                .findFirst().orElseThrow().threadId();
    }

    private VxlanPort openPort(L2Switch sw, int size) throws Exception {
        return VxlanPort.open(sw, new VxlanPort.Config(VNI, List.of(new InetSocketAddress(InetAddress.getByName(J_REMOTE), PORT)),
                InetAddress.getByName(J_LOCAL), PORT, true, Math.max(size, 1518)));
    }

    /** Calls {@code step} on a thread of its own for the warm-up and measured window; returns its CPU-ns in the window. */
    private long drive(Runnable step, Runnable windowStart, Runnable windowEnd) throws Exception {
        AtomicBoolean stop = new AtomicBoolean();
        long[] cpu = new long[2];
        AtomicBoolean measuring = new AtomicBoolean();
        Thread t = Thread.ofPlatform().name("bench-vxlan-load").start(() -> {
            boolean started = false;
            while (!stop.get()) {
                if (!started && measuring.get()) {
                    cpu[0] = ManagementFactory.getThreadMXBean().getCurrentThreadCpuTime();
                    started = true;
                }
                step.run();
            }
            cpu[1] = ManagementFactory.getThreadMXBean().getCurrentThreadCpuTime();
        });
        Thread.sleep(500L + options.warmupSeconds * 1000L);
        windowStart.run();
        measuring.set(true);
        Thread.sleep(options.seconds * 1000L);
        windowEnd.run();
        stop.set(true);
        t.join();
        return cpu[1] - cpu[0];
    }

    private Run encapJvhost(int size) throws Exception {
        procs.note("# encap jvhost: a thread calls VxlanPort.send (as a guest poller does) towards " + J_REMOTE);
        L2Switch sw = new L2Switch();
        try (VxlanPort port = openPort(sw, size)) {
            MemorySegment f = frame(size);
            long portThread = portThread();
            long[] at = new long[4];
            long cpu = drive(() -> {
                long before = port.counter(VxlanPort.TX_NO_BUFFER);
                port.send(0x5254000a0a0aL, f, 0, size);
                if (port.counter(VxlanPort.TX_NO_BUFFER) != before) {
                    LockSupport.parkNanos(20_000); // the socket's buffer is full: let the veth drain rather than spin on drops
                }
            }, () -> {
                at[0] = port.counter(VxlanPort.TX_DATAGRAMS);
                at[1] = threadCpu(portThread);
            }, () -> {
                at[2] = port.counter(VxlanPort.TX_DATAGRAMS);
                at[3] = threadCpu(portThread);
            });
            return result(at[2] - at[0], cpu + at[3] - at[1]);
        }
    }

    private Run encapLinux(int size) throws Exception {
        procs.note("# encap linux: a thread writes frames to TAP " + TAP + " in br0 with vx0 (" + NS_LINUX + ")");
        MemorySegment f = frame(size);
        long[] at = new long[2];
        long[] failed = new long[1];
        long cpu = drive(() -> {
            if (tap.write(0, f, 0, size) < 0) {
                failed[0]++;
            }
        }, () -> at[0] = txPackets(), () -> at[1] = txPackets());
        if (failed[0] > 0) {
            out.println("  (" + failed[0] + " TAP writes failed)");
        }
        return result(at[1] - at[0], cpu);
    }

    private long txPackets() {
        return linkPackets("tx");
    }

    /** {@code vx0}'s packet counter for {@code dir} (rx or tx), from the kernel. */
    private long linkPackets(String dir) {
        try {
            String s = HostCommands.runIn(NS_LINUX, "cat /sys/class/net/vx0/statistics/" + dir + "_packets");
            return Long.parseLong(s.trim());
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private Run decapJvhost(int size) throws Exception {
        L2Switch sw = new L2Switch();
        new NetDevice(sw.newPort(), 1, 0x525400000b0bL, 1500); // a NIC whose guest never reads: frames queue, then drop
        try (VxlanPort port = openPort(sw, size)) {
            long portThread = portThread();
            long[] at = new long[4];
            Run r = blast(J_REMOTE, J_LOCAL, size, () -> {
                at[0] = port.counter(VxlanPort.RX_FRAMES);
                at[1] = threadCpu(portThread);
            }, () -> {
                at[2] = port.counter(VxlanPort.RX_FRAMES);
                at[3] = threadCpu(portThread);
            }, at, 3);
            return r;
        }
    }

    private Run decapLinux(int size) throws Exception {
        long[] at = new long[4];
        return blast(L_REMOTE, L_LOCAL, size, () -> at[0] = linkPackets("rx"), () -> at[2] = linkPackets("rx"), at, -1);
    }

    /**
     * Runs {@link UdpBlaster} in the sink namespace towards {@code dst}; the frames counted between
     * the two marks (in {@code at[0]}, {@code at[2]}) over the blaster's CPU for the window, plus
     * {@code at[3] - at[1]} (a thread of ours) when {@code ourCpu} is 3.
     */
    private Run blast(String src, String dst, int size, Runnable mark0, Runnable mark1, long[] at, int ourCpu) throws Exception {
        double seconds = options.seconds + options.warmupSeconds + 1.5;
        List<String> cmd = new ArrayList<>(List.of("ip", "netns", "exec", NS_SINK,
                ProcessHandle.current().info().command().orElse("java"), "-cp", System.getProperty("java.class.path"),
                UdpBlaster.class.getName(), src, dst, Integer.toString(PORT), Integer.toString(VNI), Integer.toString(size),
                Double.toString(seconds)));
        Path log = work.resolve("blaster-" + nextRun() + ".log");
        Process p = procs.start(cmd, log);
        Thread.sleep(1000L + options.warmupSeconds * 1000L); // the JVM's start and a warm-up
        mark0.run();
        long t0 = System.nanoTime();
        Thread.sleep(options.seconds * 1000L);
        mark1.run();
        double window = (System.nanoTime() - t0) / 1e9;
        if (!p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)) {
            p.destroyForcibly();
            return new Run(Double.NaN, Double.NaN, Double.NaN, "blaster did not finish");
        }
        Matcher m = BLASTER.matcher(Files.readString(log, StandardCharsets.UTF_8));
        if (!m.find()) {
            return new Run(Double.NaN, Double.NaN, Double.NaN, "blaster: " + Procs.tail(log, 300));
        }
        // The blaster's CPU is for its whole run: the window's share of it.
        long blasterCpu = (long) (Long.parseLong(m.group(3)) * window / seconds);
        long frames = at[2] - at[0];
        long cpu = blasterCpu + (ourCpu == 3 ? at[3] - at[1] : 0);
        return result(frames, cpu, window);
    }

    private Run result(long frames, long cpuNs) {
        return result(frames, cpuNs, options.seconds);
    }

    private static Run result(long frames, long cpuNs, double seconds) {
        if (frames <= 0) {
            return new Run(0, 0, Double.NaN, "no frames moved");
        }
        double mfps = frames / seconds / 1e6;
        return new Run(mfps, frames / (cpuNs / 1e9) / 1e6, (double) cpuNs / frames, null);
    }
}
