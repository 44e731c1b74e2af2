// Routing rules' matching (main tags, CallingAet, Origin with * and ?) and the Routes schema's defaults
// and refusals.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { routesSchema } from '../../src/config/routes-schema.ts';
import type { RouteRuleConfig } from '../../src/config/types.ts';
import type { ArrivalOrigin } from '../../src/routing/arrivals.ts';
import { ruleMatches, wildcardMatch } from '../../src/routing/match.ts';

const rule = (Match: Record<string, string>): RouteRuleConfig => ({
  Name: 'r',
  When: 'Instance',
  Match,
  Send: ['b'],
  Alternate: [],
  Compression: 'gzip',
  Priority: 0,
  DeleteAfterSend: false,
  StorageCommitment: true,
});

const dicom: ArrivalOrigin = { kind: 'dicom', callingAet: 'SCANNER_CT1', calledAet: 'DICOMXFER', remoteIp: '127.0.0.1' };
const rest: ArrivalOrigin = { kind: 'rest', remoteIp: '127.0.0.1' };
const peer: ArrivalOrigin = { kind: 'peer', peer: 'site-a' };

test('wildcards: * any run, ? one character, whole value, case-insensitive, other characters literal', () => {
  assert.ok(wildcardMatch('SCANNER*', 'SCANNER_CT1'));
  assert.ok(wildcardMatch('scanner*', 'SCANNER_CT1'));
  assert.ok(wildcardMatch('C?', 'CT'));
  assert.ok(!wildcardMatch('C?', 'CTX'));
  assert.ok(!wildcardMatch('CT', 'XCT'));
  assert.ok(wildcardMatch('1.2.*', '1.2.840'));
  assert.ok(!wildcardMatch('1.2.*', '1x2.840'), 'a dot is a dot');
  assert.ok(wildcardMatch('a(b)[c]', 'A(B)[C]'));
  assert.ok(wildcardMatch('*', ''));
});

test('a rule matches main tags, CallingAet (DICOM arrivals only) and Origin', () => {
  const tags = { Modality: 'CT', PatientName: 'DOE^JOHN' };
  assert.ok(ruleMatches(rule({}), rest, tags));
  assert.ok(ruleMatches(rule({ Modality: 'CT', PatientName: 'DOE*' }), rest, tags));
  assert.ok(!ruleMatches(rule({ Modality: 'MR' }), rest, tags));
  assert.ok(!ruleMatches(rule({ StudyDescription: 'x' }), rest, tags), 'an absent tag matches only *');
  assert.ok(ruleMatches(rule({ StudyDescription: '*' }), rest, tags));
  assert.ok(ruleMatches(rule({ CallingAet: 'SCANNER*' }), dicom, tags));
  assert.ok(!ruleMatches(rule({ CallingAet: 'SCANNER*' }), rest, tags));
  assert.ok(ruleMatches(rule({ Origin: 'dicom' }), dicom, tags));
  assert.ok(!ruleMatches(rule({ Origin: 'dicom' }), rest, tags));
  assert.ok(ruleMatches(rule({ Origin: 'rest' }), rest, tags));
  assert.ok(ruleMatches(rule({ Origin: 'peer:site-a' }), peer, tags));
  assert.ok(ruleMatches(rule({ Origin: 'peer:*' }), peer, tags));
  assert.ok(!ruleMatches(rule({ Origin: 'peer:site-b' }), peer, tags));
  assert.ok(!ruleMatches(rule({ Origin: 'peer:*' }), rest, tags));
});

test('Routes: defaults filled in; duplicate names, empty Send and bad Origin refused', () => {
  const ok = routesSchema.parse([{ Name: 'a', Send: ['b'] }]);
  assert.deepEqual(ok, [
    {
      Name: 'a',
      When: 'StableStudy',
      Match: {},
      Send: ['b'],
      Alternate: [],
      Compression: 'gzip',
      Priority: 0,
      DeleteAfterSend: false,
      StorageCommitment: true,
    },
  ]);
  assert.ok(
    !routesSchema.safeParse([
      { Name: 'a', Send: ['b'] },
      { Name: 'a', Send: ['c'] },
    ]).success,
  );
  assert.ok(!routesSchema.safeParse([{ Name: 'a', Send: [] }]).success);
  assert.ok(!routesSchema.safeParse([{ Name: 'a', Send: ['b'], Match: { Origin: 'fax' } }]).success);
  assert.ok(!routesSchema.safeParse([{ Name: '../x', Send: ['b'] }]).success);
  assert.ok(!routesSchema.safeParse([{ Name: 'a', Send: ['b'], Priority: 1.5 }]).success);
});
