// Debian's Chromium for the tests that drive a real browser (through playwright-core, which never downloads
// one): where it is, why a suite skips without it, and a headless context on a throwaway profile.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Why a browser suite cannot run here, or false. */
export function chromiumSkip(): string | false {
  return existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`;
}

export interface Chromium {
  context: BrowserContext;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

/** A headless Chromium on a new profile folder named after `name`, with nothing of its own on the network. */
export async function launchChromium(name: string, opts: { viewport?: { width: number; height: number } } = {}): Promise<Chromium> {
  const profile = await mkdtemp(join(tmpdir(), `dx-${name}-chromium-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
    ],
    ...(opts.viewport ? { viewport: opts.viewport } : {}),
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
