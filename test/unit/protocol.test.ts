import { describe, expect, it } from 'vitest';
import * as protocol from '../../signaling/protocol.ts';
import { CHALLENGE_TYPES } from '../../src/identity/liveness.ts';
import { GUIDANCE_CODES } from '../../src/identity/quality.ts';

describe('the socket protocol', () => {
  it('names the same challenges and guidance codes as the identity engine (the pages cannot import the engine)', () => {
    expect([...protocol.CHALLENGE_TYPES]).toEqual([...CHALLENGE_TYPES]);
    expect([...protocol.GUIDANCE_CODES]).toEqual([...GUIDANCE_CODES]);
  });

  it('refuses a decision whose reason does not fit it, and a note over 500 characters', () => {
    const decide = protocol.clientMessages['call:decide'];
    expect(decide.safeParse({ decision: 'approved', reason: 'identity_verified' }).success).toBe(true);
    expect(decide.safeParse({ decision: 'rejected', reason: 'face_mismatch', note: 'the ID photo shows someone else' }).success).toBe(true);
    expect(decide.safeParse({ decision: 'approved', reason: 'face_mismatch' }).success).toBe(false);
    expect(decide.safeParse({ decision: 'rejected', reason: 'identity_verified' }).success).toBe(false);
    expect(decide.safeParse({ decision: 'rejected', reason: 'other', note: 'x'.repeat(501) }).success).toBe(false);
    expect(decide.safeParse({ decision: 'rejected', reason: 'other', extra: 1 }).success).toBe(false);
  });
});
