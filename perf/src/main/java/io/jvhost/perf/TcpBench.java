package io.jvhost.perf;

import io.jvhost.testkit.HostCommands;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
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

    /** One run: Mbit/s the receiver counted, guest to host and host to guest. */
    record Run(double toHost, double toGuest, String error) {}

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
                "dir", "backend", "Mbit/s", "min", "max", "spread%", "runs", "vs_qemu_tap", "vs_no_offload", "errors");
        report.meta("seconds_per_run", Integer.toString(options.seconds));
        List<String> sides = options.sides;
        List<List<Run>> runs;
        try (ControlLoop loop = new ControlLoop()) {
            runs = Rounds.alternate(sides.size(), options.runs, (s, r) -> {
                Run run = runOnce(loop, sides.get(s));
                out.printf("  %-18s run %d: %s%n", sides.get(s), r + 1, run.error != null ? "FAILED " + run.error
                        : String.format("guest->host %.0f Mbit/s, host->guest %.0f Mbit/s", run.toHost, run.toGuest));
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
                report.add(dir, sides.get(s), med, min, max, (max - min) / med * 100, v.length,
                        jvhost && qemu.length > 0 ? Report.pairedRatio(v, qemu) : Double.NaN,
                        jvhost && plain.length > 0 ? Report.pairedRatio(v, plain) : Double.NaN,
                        runs.get(s).stream().filter(x -> x.error != null).count());
            }
        }
        return finish(report);
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
            if (side.startsWith("jvhost")) {
                boolean offloads = side.equals("jvhost");
                tap = new TapPort(TAP, 1);
                NetDevice device = new NetDevice(tap, 1, 0x525400000088L, 1500, offloads);
                backend = new Backend("tcp" + n, device, BackendOptions.DEFAULT, loop);
                backend.start();
                vhost = VhostUserServer.listen(work.resolve("tcp-" + n + ".sock"), backend, loop);
                nic = QemuConfigs.deviceArgs("net-qemu.sh", vhost.path().toString(), MAC, "1");
                procs.note("# run " + n + ": ./jvhost net --tap " + TAP + (offloads ? "" : " --no-offload")
                        + " --socket S; guest: qemu-configs/net-qemu.sh S " + MAC + " 1");
            } else {
                HostCommands.run("ip", "tuntap", "add", "dev", TAP, "mode", "tap", "vnet_hdr");
                nic = List.of("-netdev", "tap,id=t0,ifname=" + TAP + ",script=no,downscript=no,vhost=off",
                        "-device", "virtio-net-pci,netdev=t0,mac=" + MAC + (side.equals("qemu-tap-intx") ? ",vectors=0" : ""));
                procs.note("# run " + n + ": qemu-system-x86_64 ... " + String.join(" ", nic));
            }
            try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).memoryMib(512).cpus(1)
                    .extraArgs(nic).logFile(work.resolve("tcp-" + n + "-" + side + ".log")).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                HostCommands.run("ip", "link", "set", TAP, "netns", NS);
                HostCommands.run("ip", "netns", "exec", NS, "ip", "addr", "add", HOST_IP + "/24", "dev", TAP);
                HostCommands.run("ip", "netns", "exec", NS, "ip", "link", "set", TAP, "up");
                server = new ProcessBuilder("ip", "netns", "exec", NS, "iperf3", "-s", "-B", HOST_IP)
                        .redirectErrorStream(true).redirectOutput(work.resolve("iperf3-server-" + n + ".log").toFile()).start();
                guest.exec("ip link set eth0 up && ip addr add " + GUEST_IP + "/24 dev eth0 && ping -c 1 -W 5 " + HOST_IP,
                        Duration.ofMinutes(1));
                String t = Integer.toString(options.seconds);
                QemuGuest.Result up = guest.exec("iperf3 -c " + HOST_IP + " -t " + t + " -f m", Duration.ofMinutes(2));
                QemuGuest.Result down = guest.exec("iperf3 -c " + HOST_IP + " -t " + t + " -f m -R", Duration.ofMinutes(2));
                guest.quit(Duration.ofSeconds(60));
                double toHost = mbits(up.output()), toGuest = mbits(down.output());
                return Double.isNaN(toHost) || Double.isNaN(toGuest)
                        ? new Run(toHost, toGuest, "iperf3: " + up.output() + down.output())
                        : new Run(toHost, toGuest, null);
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
