#!/usr/bin/env node
// Runs a command (the test suite) inside a network namespace of its own that has only a loopback
// interface, when it can (root, iproute2): the servers the tests start, Orthanc among them (it cannot bind
// loopback only), are then reachable from nowhere but this machine's test run. Elsewhere the command runs
// as it is. DICOM_XFER_TEST_NETNS=0 turns the namespace off.
import { spawn, spawnSync } from 'node:child_process';

const [cmd, ...args] = process.argv.slice(2);
if (!cmd) {
  console.error('usage: node test/netns.mjs COMMAND [ARG...]');
  process.exit(2);
}

/** Runs argv with the terminal's stdio and resolves with its exit code (signals passed on). */
function run(argv, env) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit', env });
    const pass = (sig) => () => child.kill(sig);
    const onInt = pass('SIGINT');
    const onTerm = pass('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    child.once('error', (e) => {
      console.error(`cannot run ${argv[0]}: ${e.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

function ip(...a) {
  return spawnSync('ip', a, { encoding: 'utf8', timeout: 30_000 });
}

function whyNot() {
  if (process.env.DICOM_XFER_TEST_NETNS === '0') return 'DICOM_XFER_TEST_NETNS=0';
  if (process.env.DICOM_XFER_IN_TEST_NETNS === '1') return 'already inside the test namespace';
  if (process.getuid?.() !== 0) return 'not root';
  const probe = ip('-V');
  if (probe.error || probe.status !== 0) return 'iproute2 (ip) is not installed';
  return undefined;
}

const reason = whyNot();
if (reason) {
  if (process.env.DICOM_XFER_IN_TEST_NETNS !== '1') console.error(`tests run in this machine's own network (${reason})`);
  process.exit(await run([cmd, ...args], process.env));
}

const ns = `dxtest-${process.pid}`;
const made = ip('netns', 'add', ns);
if (made.status !== 0) {
  console.error(`tests run in this machine's own network (ip netns add failed: ${made.stderr.trim()})`);
  process.exit(await run([cmd, ...args], process.env));
}
let code = 1;
try {
  const up = ip('-n', ns, 'link', 'set', 'lo', 'up');
  if (up.status !== 0) throw new Error(`ip link set lo up: ${up.stderr.trim()}`);
  console.error(`tests run in network namespace ${ns} (loopback only)`);
  code = await run(['ip', 'netns', 'exec', ns, cmd, ...args], { ...process.env, DICOM_XFER_IN_TEST_NETNS: '1' });
} finally {
  // Whatever a test left running in the namespace is ended with it (only processes inside it).
  const pids = (ip('netns', 'pids', ns).stdout ?? '').split(/\s+/).filter(Boolean);
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  ip('netns', 'del', ns);
}
process.exit(code);
