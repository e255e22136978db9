import dgram from 'node:dgram';
import { readdir, readFile, readlink } from 'node:fs/promises';

/**
 * Loopback UDP ports for a receiver we cannot ask (ffmpeg).
 *
 * ffmpeg's SDP input binds the port written in the SDP (RTP) and the next one (RTCP), and never
 * reports a port it chose itself: an m-line port of 0 means "stream disabled" (RFC 3264), and
 * ffmpeg prints no bound address. So we pick the pair: the kernel gives a free port (bind to 0),
 * we check the next one is free too, release both, and hand them to ffmpeg. Between the release
 * and ffmpeg's bind another process could take one; then ffmpeg fails to bind (it exits, or binds
 * its RTCP elsewhere) and `heldBy` never confirms the pair: the caller kills it and tries a new
 * pair. Nothing else is ever sent to these ports, and everything binds to 127.0.0.1 only.
 */

export interface UdpPortPair {
  rtpPort: number;
  rtcpPort: number;
}

/** A free pair of consecutive UDP ports on `host` (RTP even or odd: ffmpeg does not care). */
export async function findFreeUdpPortPair(host = '127.0.0.1', attempts = 20): Promise<UdpPortPair> {
  for (let i = 0; i < attempts; i++) {
    const first = await bindUdp(host, 0);
    if (!first.socket) continue;
    const rtpPort = first.socket.address().port;
    const second = rtpPort < 65535 ? await bindUdp(host, rtpPort + 1) : { socket: undefined };
    await closeUdp(first.socket);
    if (second.socket) {
      await closeUdp(second.socket);
      return { rtpPort, rtcpPort: rtpPort + 1 };
    }
  }
  throw new Error(`no free pair of consecutive UDP ports on ${host} after ${attempts} attempts`);
}

/**
 * Whether process `pid` has sockets bound to every one of `ports` on IPv4 (read from
 * /proc/net/udp and /proc/<pid>/fd: nothing is sent, nothing is bound, so it cannot disturb the
 * process). `undefined` where /proc is not available (not Linux): the caller falls back to a delay.
 */
export async function udpPortsHeldBy(pid: number, ports: readonly number[]): Promise<boolean | undefined> {
  let table: string;
  let fds: string[];
  try {
    table = await readFile('/proc/net/udp', 'utf8');
    fds = await readdir(`/proc/${pid}/fd`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (await procAvailable())) return false; // the process is gone
    return undefined;
  }
  const inodes = new Set<string>();
  await Promise.all(
    fds.map(async (fd) => {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m) inodes.add(m[1]!);
    }),
  );
  const held = new Set<number>();
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    const local = cols[1];
    const inode = cols[9];
    if (!local || !inode || !inodes.has(inode)) continue;
    held.add(parseInt(local.split(':')[1] ?? '', 16));
  }
  return ports.every((p) => held.has(p));
}

let procChecked: boolean | undefined;
async function procAvailable(): Promise<boolean> {
  if (procChecked === undefined) procChecked = await readFile('/proc/net/udp', 'utf8').then(() => true, () => false);
  return procChecked;
}

function bindUdp(host: string, port: number): Promise<{ socket: dgram.Socket | undefined }> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    socket.once('error', () => {
      try {
        socket.close();
      } catch {
        // already closed by the failed bind
      }
      resolve({ socket: undefined });
    });
    socket.bind(port, host, () => resolve({ socket }));
  });
}

function closeUdp(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}
