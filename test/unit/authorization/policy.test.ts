import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_FILE, loadPolicy } from '../../../src/authorization/policy.ts';
import { ConfigError, loadConfig } from '../../../src/config.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vt-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

function refusal(file: string): ConfigError {
  try {
    loadPolicy(file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`${file} was accepted`);
}

const GOOD = `
version: 1
transactionTypes:
  large_transfer:
    businessTypes: [wealth_product]
    requires: { faceMatch: true, liveness: true, document: false, recording: true }
    maxRecordAgeS: 3600
    amount: { required: true, currencies: [EUR, CHF] }
    dualControl: { above: { EUR: 100000, CHF: "90000.50" } }
    approverScopes: [full_service]
`;

describe('the policy file', () => {
  it('ships a default that parses, with the three transaction types of the issue', () => {
    const p = loadPolicy();
    expect(p.file).toBe(DEFAULT_POLICY_FILE);
    expect(p.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(p.policy.transactionTypes).sort()).toEqual(['corporate_account_opening', 'large_transfer', 'wealth_product_purchase']);
    expect(p.policy.transactionTypes.corporate_account_opening).toMatchObject({
      businessTypes: ['corporate_account_opening'],
      requires: { faceMatch: true, liveness: true, document: true, recording: true },
      dualControl: 'always',
    });
    expect(p.policy.transactionTypes.large_transfer!.dualControl).toMatchObject({ above: { EUR: '100000' } });
  });

  it('is named by POLICY_FILE, unset by default', () => {
    expect(loadConfig({}).POLICY_FILE).toBeUndefined();
    expect(loadConfig({ POLICY_FILE: '/etc/videoteller/policy.yaml' }).POLICY_FILE).toBe('/etc/videoteller/policy.yaml');
  });

  it('accepts a valid file and normalises thresholds to decimal strings; dualControl defaults to never', () => {
    const p = loadPolicy(write('good.yaml', GOOD));
    expect(p.policy.transactionTypes.large_transfer!.dualControl).toEqual({ above: { EUR: '100000', CHF: '90000.50' } });
    const q = loadPolicy(write('plain.yaml', GOOD.replace(/\n    dualControl:.*\n/, '\n')));
    expect(q.policy.transactionTypes.large_transfer!.dualControl).toBe('never');
  });

  it('refuses a broken file naming the path and the field', () => {
    const file = write('bad-evidence.yaml', GOOD.replace('document: false, ', ''));
    const err = refusal(file);
    expect(err.message).toContain(file);
    expect(err.message).toContain('transactionTypes.large_transfer.requires.document');
  });

  it('names every issue', () => {
    const file = write('many.yaml', GOOD.replace('[wealth_product]', '[wealth_products]').replace('3600', '-1').replace('[EUR, CHF]', '[EUR, chf]'));
    const issues = refusal(file).issues.join('\n');
    expect(issues).toContain('businessTypes.0');
    expect(issues).toContain('maxRecordAgeS');
    expect(issues).toContain('amount.currencies.1');
  });

  it('refuses thresholds that do not fit the currencies, or without amounts', () => {
    expect(refusal(write('no-chf.yaml', GOOD.replace(', CHF: "90000.50"', ''))).message).toContain('dualControl.above.CHF: no threshold for CHF');
    expect(refusal(write('extra.yaml', GOOD.replace('CHF: "90000.50"', 'CHF: "90000.50", USD: 1'))).message).toContain('USD is not in amount.currencies');
    expect(refusal(write('no-amount.yaml', GOOD.replace(/\n    amount:.*\n/, '\n'))).message).toContain('thresholds need amount rules');
    expect(refusal(write('float.yaml', GOOD.replace('100000', '1e21'))).message).toContain('dualControl.above.EUR');
    expect(refusal(write('zero.yaml', GOOD.replace('100000', '0'))).message).toContain('more than zero');
  });

  it('refuses an approval scope the staff directory does not know', () => {
    expect(refusal(write('scope.yaml', GOOD.replace('[full_service]', '[full_service, payments.large]'))).message).toContain('approverScopes.1');
    expect(refusal(write('noscope.yaml', GOOD.replace('[full_service]', '[]'))).message).toContain('approverScopes');
  });

  it('refuses unknown keys (a typo must not silently relax a rule)', () => {
    expect(refusal(write('typo.yaml', GOOD.replace('recording: true', 'recording: true, recordng: true'))).message).toContain('recordng');
    expect(refusal(write('top.yaml', GOOD + 'extra: 1\n')).message).toMatch(/extra/);
  });

  it('refuses a file that is missing, not YAML, the wrong version or empty', () => {
    const missing = path.join(dir, 'nope.yaml');
    expect(refusal(missing).message).toContain(`${missing}: cannot be read (ENOENT)`);
    expect(refusal(write('notyaml.yaml', 'version: [1\n')).message).toContain('not valid YAML');
    expect(refusal(write('v2.yaml', GOOD.replace('version: 1', 'version: 2'))).message).toContain('version');
    expect(refusal(write('empty.yaml', 'version: 1\ntransactionTypes: {}\n')).message).toContain('at least one transaction type');
    expect(refusal(write('dup.yaml', GOOD + '  large_transfer: {}\n')).message).toContain('not valid YAML');
  });
});
