// Job figures: MB/KB rounding, network speed, progress, and Orthanc timestamps, against the plugin's unit
// tests and the job documents of the captures.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bucketPhaseProgress,
  formatOrthancTimestamp,
  networkSpeedKBs,
  parseOrthancTimestamp,
  progressPercent,
  toKilobytes,
  toMegabytes,
} from '../../src/protocol/progress.ts';

describe('rounding to MB and KB', () => {
  test('the plugin unit-test conversions', () => {
    assert.equal(toKilobytes(2048), 2);
    assert.equal(toKilobytes(1000), 1);
    assert.equal(toKilobytes(500), 0);
    assert.equal(toMegabytes(2048 * 1024), 2);
    assert.equal(toMegabytes(1000 * 1024), 1);
    assert.equal(toMegabytes(500 * 1024), 0);
  });

  test('the captures: 4118738 -> 4, 7080964 -> 7, 10750000 -> 10, 136316116 -> 130', () => {
    assert.equal(toMegabytes(4118738), 4);
    assert.equal(toMegabytes(7080964), 7);
    assert.equal(toMegabytes(10750000), 10);
    assert.equal(toMegabytes(136316116), 130);
  });

  test('halves round up; sizes past 4 GiB work', () => {
    assert.equal(toMegabytes(512 * 1024), 1);
    assert.equal(toMegabytes(512 * 1024 - 1), 0);
    assert.equal(toMegabytes(0), 0);
    assert.equal(toMegabytes(5 * 2 ** 30), 5120);
    assert.equal(toKilobytes(1536), 2);
  });
});

describe('network speed', () => {
  test('bytes x 1000 / (1024 x ms), truncated; 0 under 10 ms', () => {
    assert.equal(networkSpeedKBs(4_118_738, 9.9), 0);
    assert.equal(networkSpeedKBs(4_118_738, 0), 0);
    assert.equal(networkSpeedKBs(1024 * 1000, 1000), 1000);
    assert.equal(networkSpeedKBs(4_118_738, 96), Math.trunc((4_118_738 * 1000) / (1024 * 96)));
    assert.equal(networkSpeedKBs(1023, 1000), 0);
    // Milliseconds count whole, as the plugin's clock difference does.
    assert.equal(networkSpeedKBs(1024 * 100, 100.9), 1000);
  });
});

describe('progress', () => {
  test('(1 + completed) / (2 + total), shown as a rounded percent', () => {
    // CAPTURES §3: one bucket done of one, job still running -> Progress 67.
    assert.equal(progressPercent(bucketPhaseProgress(1, 1)), 67);
    assert.equal(progressPercent(bucketPhaseProgress(0, 1)), 33);
    assert.equal(progressPercent(bucketPhaseProgress(0, 0)), 50);
    assert.equal(progressPercent(bucketPhaseProgress(3, 3)), 80);
    assert.equal(progressPercent(bucketPhaseProgress(17, 18)), 90);
    assert.equal(progressPercent(0), 0);
    assert.equal(progressPercent(1), 100);
  });
});

describe('Orthanc timestamps', () => {
  test('YYYYMMDDTHHMMSS.ffffff in UTC', () => {
    const t = Date.UTC(2026, 10, 29, 7, 0, 50, 317);
    assert.equal(formatOrthancTimestamp(t + 0.511), '20261129T070050.317511');
    assert.equal(formatOrthancTimestamp(new Date(t)), '20261129T070050.317000');
    assert.equal(formatOrthancTimestamp(Date.UTC(2026, 0, 2, 3, 4, 5)), '20260102T030405');
    assert.equal(formatOrthancTimestamp(Date.UTC(1999, 11, 31, 23, 59, 59, 999) + 0.999), '19991231T235959.999999');
  });

  test('parse back the captured timestamps', () => {
    const ms = parseOrthancTimestamp('20261129T070050.317511');
    assert.equal(ms, Date.UTC(2026, 10, 29, 7, 0, 50, 317) + 0.511);
    assert.equal(formatOrthancTimestamp(ms ?? 0), '20261129T070050.317511');
    assert.equal(parseOrthancTimestamp('20261129T072145'), Date.UTC(2026, 10, 29, 7, 21, 45));
    for (const bad of ['', '2026-11-29T07:00:50', '20261129 070050', '20261129T0700']) assert.equal(parseOrthancTimestamp(bad), undefined);
  });
});
