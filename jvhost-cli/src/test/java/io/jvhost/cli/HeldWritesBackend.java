package io.jvhost.cli;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.BlockRequest;
import io.jvhost.blk.BlockStore;
import io.jvhost.blk.RamStore;

import picocli.CommandLine;

/**
 * {@code jvhost blk --ram} in a process of its own whose store takes writes and never finishes
 * them, served by the CLI's own {@link ServeOptions#serve}: a first signal starts a shutdown that
 * waits for the held write (up to blk's 30 s stop timeout), so a test can send the second one
 * while it is under way. Prints {@code HELD} for every write it holds. Arguments: ServeOptions'.
 */
public final class HeldWritesBackend {
    private HeldWritesBackend() {
    }

    public static void main(String[] args) throws Exception {
        ServeOptions options = new ServeOptions();
        new CommandLine(options).parseArgs(args);
        options.serve("blk", new BlkDevice(new HeldWrites(new RamStore(1 << 20)), 1));
    }

    private record HeldWrites(BlockStore store) implements BlockStore {
        @Override
        public long size() {
            return store.size();
        }

        @Override
        public void submit(BlockRequest[] requests, int count) {
            for (int i = 0; i < count; i++) {
                if (requests[i].type() == BlockRequest.Type.WRITE) {
                    System.out.println("HELD write at " + requests[i].offset());
                } else {
                    store.submit(new BlockRequest[] {requests[i]}, 1);
                }
            }
        }
    }
}
