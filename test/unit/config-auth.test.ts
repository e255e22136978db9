import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiKeys } from '../../src/auth/api-keys.ts';
import { hashPassword, verifyPassword } from '../../src/auth/passwords.ts';
import { DEMO_STAFF_FILE, StaffDirectory } from '../../src/auth/staff-directory.ts';
import { StaffTokens } from '../../src/auth/staff-tokens.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { maskId } from '../../src/logger.ts';
import { assertTransition, canTransition, InvalidTransitionError } from '../../signaling/session-state.ts';

describe('config', () => {
  it('works with no environment at all (embedded defaults)', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ HOST: '127.0.0.1', PORT: 8080, ROUTING_MODE: 'longest_idle' });
    expect(path.isAbsolute(c.DATA_DIR)).toBe(true);
    expect(c.PUBLIC_URL).toBeUndefined();
  });

  it('honours PORT and HOST and ignores empty variables', () => {
    expect(loadConfig({ PORT: '9999', HOST: '0.0.0.0', PUBLIC_URL: '' })).toMatchObject({ PORT: 9999, HOST: '0.0.0.0' });
  });

  it('names every bad variable without echoing its value', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'eighty', ROUTING_MODE: 'fastest', JWT_SECRET: 'short-secret-value' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as ConfigError).message;
    expect((err as ConfigError).issues.map((i) => i.split(':')[0]).sort()).toEqual(['JWT_SECRET', 'PORT', 'ROUTING_MODE']);
    expect(message).not.toContain('short-secret-value');
    expect(() => loadConfig({ RTC_MIN_PORT: '50000', RTC_MAX_PORT: '40000' })).toThrow(ConfigError);
  });

  it('checks the identity and liveness settings', () => {
    expect(loadConfig({ LIVENESS_CHALLENGE_TYPES: 'turn_left, move_closer' }).LIVENESS_CHALLENGE_TYPES).toEqual(['turn_left', 'move_closer']);
    const bad: Record<string, string>[] = [
      { LIVENESS_CHALLENGE_TYPES: 'turn_left,jump' },
      { LIVENESS_CHALLENGE_TYPES: '' + ',' },
      { LIVENESS_CHALLENGES: '1' },
      { LIVENESS_CHALLENGE_TIMEOUT_MS: '500' },
      { IDENTITY_FRAME_RATE: '0' },
      { IDENTITY_CHALLENGE_FRAME_RATE: 'fast' },
      { IDENTITY_MATCH_THRESHOLD: '3' },
      // The rolling decision needs a majority of its window.
      { IDENTITY_MATCH_WINDOW: '10', IDENTITY_MATCH_MIN_FRAMES: '4' },
    ];
    for (const env of bad) expect(() => loadConfig(env), JSON.stringify(env)).toThrow(ConfigError);
  });
});

describe('staff directory and passwords', () => {
  it('hashes with scrypt and verifies only the right password', async () => {
    const hash = await hashPassword('correct horse battery', { N: 1024, r: 8, p: 1 });
    expect(hash).toMatch(/^scrypt\$1024\$8\$1\$/);
    expect(await verifyPassword('correct horse battery', hash)).toBe(true);
    expect(await verifyPassword('correct horse batterz', hash)).toBe(false);
    expect(await verifyPassword('x', 'not-a-hash')).toBe(false);
  });

  it('loads the demo directory and authenticates by username, case-insensitively', async () => {
    const dir = StaffDirectory.load(DEMO_STAFF_FILE);
    expect(await dir.authenticate('ALICE', 'alice-demo-pass')).toMatchObject({ id: 't-alice', role: 'teller' });
    expect(await dir.authenticate('alice', 'bob-demo-pass')).toBeUndefined();
    expect(await dir.authenticate('nobody', 'alice-demo-pass')).toBeUndefined();
  });

  it('rejects an invalid directory file with the field named', () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'staff-'));
    const file = path.join(tmp, 'staff.yaml');
    writeFileSync(file, 'staff:\n  - id: x\n    username: x\n    displayName: X\n    role: janitor\n    passwordHash: plain\n');
    expect(() => StaffDirectory.load(file)).toThrow(/staff\.0\.role.*staff\.0\.passwordHash|staff\.0\.passwordHash.*staff\.0\.role/);
    writeFileSync(file, '{"staff": [');
    expect(() => StaffDirectory.load(file)).toThrow();
  });
});

describe('tokens and keys', () => {
  it('issues staff JWTs that verify, and names expired and forged ones', async () => {
    const tokens = new StaffTokens('a'.repeat(32), 60);
    const staff = { id: 't-1', displayName: 'T', role: 'teller' as const, skills: { businessTypes: ['consultation' as const], languages: ['en'] } };
    const { token } = await tokens.issue(staff);
    // A staff member issued without a scope gets the narrowest one.
    expect(await tokens.verify(token)).toEqual({ ok: true, staff: { ...staff, approvalScope: 'consult_only' } });
    const scoped = await tokens.issue({ ...staff, approvalScope: 'full_service' });
    expect(await tokens.verify(scoped.token)).toMatchObject({ ok: true, staff: { approvalScope: 'full_service' } });
    expect(await new StaffTokens('b'.repeat(32), 60).verify(token)).toEqual({ ok: false, error: 'token_invalid' });
    const expired = await new StaffTokens('a'.repeat(32), -10).issue(staff);
    expect(await tokens.verify(expired.token)).toEqual({ ok: false, error: 'token_expired' });
    expect(await tokens.verify('garbage')).toEqual({ ok: false, error: 'token_invalid' });
  });

  it('identifies API keys by id and refuses malformed key lists', () => {
    const keys = new ApiKeys('bank-a:aaaaaaaaaaaaaaaa1, bank-b:bbbbbbbbbbbbbbbb2');
    expect(keys.identify('bbbbbbbbbbbbbbbb2')).toBe('bank-b');
    expect(keys.identify('aaaaaaaaaaaaaaaa')).toBeUndefined();
    expect(keys.identify(undefined)).toBeUndefined();
    expect(() => new ApiKeys('no-colon')).toThrow(/id:secret/);
    expect(() => new ApiKeys('a:short')).toThrow(/shorter than 16/);
  });

  it('masks identifiers for logs', () => {
    expect(maskId('DE89370400440532013000')).toBe('******************3000');
    expect(maskId('123')).toBe('***');
  });
});

describe('session state machine', () => {
  it('allows the documented path and refuses skipping or leaving terminal states', () => {
    for (const [from, to] of [['created', 'queued'], ['queued', 'offered'], ['offered', 'queued'], ['offered', 'in_call'], ['in_call', 'reconnecting'], ['reconnecting', 'in_call'], ['in_call', 'decided'], ['decided', 'ended']] as const) {
      expect(canTransition(from, to)).toBe(true);
    }
    expect(() => assertTransition('created', 'in_call')).toThrow(InvalidTransitionError);
    expect(() => assertTransition('ended', 'queued')).toThrow(InvalidTransitionError);
    expect(canTransition('abandoned', 'queued')).toBe(false);
  });
});
