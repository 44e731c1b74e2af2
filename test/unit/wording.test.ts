// Messages built from level names and counts: plurals as English writes them ("GET /studies", "1 study").
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildTransferRequest } from '../../src/cli/send.ts';
// @ts-expect-error: the dashboard's modules are plain JavaScript for the browser, without declarations
import { count } from '../../web/ui/format.js';

describe('wording', () => {
  test('a malformed ID names the list route of its level', () => {
    const cases: [Record<string, string[]>, string][] = [
      [{ study: ['nope'] }, 'GET /studies'],
      [{ patient: ['nope'] }, 'GET /patients'],
      [{ series: ['nope'] }, 'GET /series'],
      [{ instance: ['nope'] }, 'GET /instances'],
    ];
    for (const [flags, route] of cases) {
      assert.throws(
        () => buildTransferRequest({ peer: 'b', ...flags } as unknown as Parameters<typeof buildTransferRequest>[0]),
        (e: Error) => e.message.includes(`as ${route} lists them`),
        route,
      );
    }
  });

  test('the dashboard counts in the singular for one', () => {
    const c = count as (n: number, one: string, many: string) => string;
    assert.equal(c(1, 'study', 'studies'), '1 study');
    assert.equal(c(2, 'study', 'studies'), '2 studies');
    assert.equal(c(0, 'instance', 'instances'), '0 instances');
  });
});
