// The contract every link-profile store keeps (src/transfer/adaptive/link-profile.ts), as one suite that each
// implementation's test file runs with its own: a profile found under its peer, URL and direction only, only
// while younger than a week, a newer one in its place, a restart that keeps it, and a damaged one ignored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LINK_PROFILE_MAX_AGE_MS, type LinkProfile, type LinkProfileStore } from '../../src/transfer/adaptive/link-profile.ts';
import { describe } from '../helpers/data.ts';

export interface LinkProfilesUnderTest {
  /** Opens the store on its storage, its warnings into `warnings`; a second call after close() is a restart. */
  open(warnings: string[]): Promise<LinkProfileStore & { close(): void }>;
  /** Damages what is kept of peer `peer` the way an edit or a bad disk would (a field of the wrong value). */
  damage(peer: string): Promise<void>;
  /** Removes the storage. */
  remove(): Promise<void>;
}

const T0 = Date.UTC(2026, 11, 1);
const profile: LinkProfile = {
  version: 2,
  peer: 'b',
  url: 'http://127.0.0.1:8042/',
  direction: 'push',
  requestsInFlight: 24,
  bytesPerSecond: 11.5e6,
  windows: 7,
  spanBytes: 4 << 20,
  compression: { codec: 'gzip', level: 3 },
  rttMs: 38.5,
  measuredAt: T0,
};
const key = { peer: 'b', url: profile.url, direction: 'push' } as const;

/** Registers the contract suite for one implementation; `make` gives a fresh, empty storage. */
export function runLinkProfileContract(name: string, make: () => Promise<LinkProfilesUnderTest>): void {
  describe(`link-profile store contract: ${name}`, () => {
    test('a profile is found under its peer, URL and direction only, and only while younger than a week', async () => {
      const sut = await make();
      const store = await sut.open([]);
      try {
        await store.put(profile);
        assert.deepEqual(await store.get(key, T0 + 1000), profile);
        assert.equal(await store.get({ ...key, url: 'http://10.0.0.9:8042/' }, T0), undefined, 'the peer pointed elsewhere');
        assert.equal(await store.get({ ...key, peer: 'c' }, T0), undefined);
        assert.equal(await store.get({ ...key, direction: 'pull' }, T0), undefined);
        assert.equal(await store.get(key, T0 + LINK_PROFILE_MAX_AGE_MS + 1), undefined, 'too old');
        // A newer measurement takes its place, and a restart keeps it.
        await store.put({ ...profile, requestsInFlight: 32, measuredAt: T0 + 5000 });
        store.close();
        const again = await sut.open([]);
        assert.equal((await again.get(key, T0 + 6000))?.requestsInFlight, 32);
        again.close();
      } finally {
        await sut.remove();
      }
    });

    test('a damaged profile is ignored with a warning; a bad profile is never written', async () => {
      const sut = await make();
      const warnings: string[] = [];
      let store = await sut.open(warnings);
      try {
        await store.put(profile);
        store.close();
        await sut.damage('b');
        store = await sut.open(warnings);
        assert.equal(await store.get(key, T0), undefined);
        assert.equal(warnings.length, 1);
        assert.match(warnings[0] as string, /link profile ignored.*requestsInFlight/);
        await assert.rejects(store.put({ ...profile, bytesPerSecond: Number.NaN }));
        store.close();
      } finally {
        await sut.remove();
      }
    });
  });
}
