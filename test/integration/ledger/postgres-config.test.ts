/**
 * Choosing the PostgreSQL ledger: DATABASE_URL parsed at start, the backend picked by the one
 * place that opens the ledger, and clear errors for a bad URL or a database that is down.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.ts';
import { FileLedger } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { PostgresLedger } from '../../../src/ledger/postgres/pg-ledger.ts';
import { openServerLedger } from '../../../src/ledger/server-ledger.ts';
import { entryInput, silentLogger, tempDir } from '../../unit/ledger/helpers.ts';
import { dropSchema, freshSchema, sql, TEST_DATABASE_URL } from './postgres-helpers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const ORIGIN = 'bank.example/ledger';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function env(extra: Record<string, string>) {
  const tmp = tempDir('vt-pg-config-');
  cleanups.push(() => tmp.remove());
  return { tmp, vars: { DATA_DIR: path.join(tmp.dir, 'data'), LOG_LEVEL: 'silent', PORT: '0', ...extra } };
}

describe('DATABASE_URL in the config', () => {
  it('is optional: without it nothing changes (the file ledger in DATA_DIR)', async () => {
    const { vars } = env({});
    const config = loadConfig(vars);
    expect(config.DATABASE_URL).toBeUndefined();
    const server = await openServerLedger(config, silentLogger());
    cleanups.push(() => server.close());
    expect(server.ledger).toBeInstanceOf(FileLedger);
    expect(existsSync(path.join(vars.DATA_DIR, 'ledger', 'LEDGER'))).toBe(true);
    expect(existsSync(path.join(vars.DATA_DIR, 'keys', 'jwks.json'))).toBe(true);
  });

  it.each([
    ['another scheme', 'mysql://root:hunter2@127.0.0.1:3306/bank'],
    ['not a URL', 'host=127.0.0.1 password=hunter2'],
    ['a path', '/var/run/postgresql'],
  ])('refuses %s with a config error that names the variable and not the value', (_what, value) => {
    const { vars } = env({ DATABASE_URL: value });
    let err: unknown;
    try {
      loadConfig(vars);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues).toEqual(['DATABASE_URL: must be a postgres:// or postgresql:// URL']);
    expect((err as Error).message).not.toContain('hunter2');
  });

  it('refuses a schema name that is not a plain identifier', () => {
    const { vars } = env({ DATABASE_URL: TEST_DATABASE_URL, LEDGER_PG_SCHEMA: 'ledger"; drop table x; --' });
    expect(() => loadConfig(vars)).toThrow(/LEDGER_PG_SCHEMA/);
  });

  it('with DATABASE_URL the server ledger is PostgreSQL, signing with the keys in LEDGER_KEYS_DIR', async () => {
    const schema = freshSchema();
    cleanups.push(() => dropSchema(schema));
    const shared = tempDir('vt-pg-keys-');
    cleanups.push(() => shared.remove());
    const { vars } = env({ DATABASE_URL: TEST_DATABASE_URL, LEDGER_PG_SCHEMA: schema, LEDGER_ORIGIN: ORIGIN, LEDGER_KEYS_DIR: path.join(shared.dir, 'keys') });
    const config = loadConfig(vars);
    expect(config.DATABASE_URL).toBe(TEST_DATABASE_URL);
    const server = await openServerLedger(config, silentLogger());
    cleanups.push(() => server.close());
    expect(server.ledger).toBeInstanceOf(PostgresLedger);
    expect(server.keyRing.dir).toBe(config.LEDGER_KEYS_DIR);
    expect(existsSync(path.join(vars.DATA_DIR, 'ledger'))).toBe(false);
    const r = await server.evidence.append(entryInput(0));
    expect(r.index).toBe(0);
    const rows = await sql<{ idx: string }>(`SELECT idx FROM "${schema}".ledger_entries`);
    expect(rows.rows).toEqual([{ idx: '0' }]);
    expect(existsSync(path.join(shared.dir, 'keys', 'jwks.json'))).toBe(true);
  });

  it('PostgreSQL down at start: a clear error naming the server, never the password', async () => {
    const port = await closedPort();
    const { vars } = env({ DATABASE_URL: `postgres://postgres:hunter2@127.0.0.1:${port}/test` });
    const config = loadConfig(vars);
    const err = await openServerLedger(config, silentLogger()).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(err).toMatchObject({ name: 'LedgerError', code: 'failed' });
    expect(err!.message).toContain(`cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:${port}/test (DATABASE_URL)`);
    expect(err!.message).toContain('ECONNREFUSED');
    expect(err!.message).not.toContain('hunter2');
  });

  it('the server process stops at start: exit 2 for a bad DATABASE_URL, an error naming the database when it is down', async () => {
    const run = (extra: Record<string, string>) => {
      const { vars } = env(extra);
      return spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: root, encoding: 'utf8', env: { ...process.env, ...vars }, timeout: 60_000 });
    };
    const bad = run({ DATABASE_URL: 'mysql://root:hunter2@127.0.0.1/bank' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('DATABASE_URL: must be a postgres:// or postgresql:// URL');
    expect(bad.stderr).not.toContain('hunter2');

    const port = await closedPort();
    const down = run({ DATABASE_URL: `postgres://postgres:hunter2@127.0.0.1:${port}/test` });
    expect(down.status).toBe(1);
    expect(down.stderr).toContain(`cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:${port}/test`);
    expect(down.stderr).not.toContain('hunter2');
  });
});

describe('opening the PostgreSQL ledger', () => {
  it('two nodes starting together on a fresh schema create it once and then share the log', async () => {
    const schema = freshSchema();
    cleanups.push(() => dropSchema(schema));
    const tmp = tempDir();
    cleanups.push(() => tmp.remove());
    const log = silentLogger();
    const keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log });
    const open = () => PostgresLedger.open({ databaseUrl: TEST_DATABASE_URL, schema, origin: ORIGIN, keyRing, log, checkpointIntervalMs: 60_000 });
    const [a, b] = await Promise.all([open(), open()]);
    cleanups.push(() => a.close());
    cleanups.push(() => b.close());
    const results = await Promise.all([a.append(entryInput(0)), b.append(entryInput(1)), a.append(entryInput(2)), b.append(entryInput(3))]);
    expect(results.map((r) => r.index).sort()).toEqual([0, 1, 2, 3]);
    expect((await b.getEntries(0, 4)).map((e) => e.index)).toEqual([0, 1, 2, 3]);
    expect((await a.checkpoint()).size).toBe(4);
  });

  it('keeps the origin the schema was created for, as the file ledger keeps its directory', async () => {
    const schema = freshSchema();
    cleanups.push(() => dropSchema(schema));
    const tmp = tempDir();
    cleanups.push(() => tmp.remove());
    const log = silentLogger();
    const keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log });
    const opts = { databaseUrl: TEST_DATABASE_URL, schema, origin: ORIGIN, keyRing, log, checkpointIntervalMs: 60_000 };
    await (await PostgresLedger.open(opts)).close();
    await expect(PostgresLedger.open({ ...opts, origin: 'other.example/ledger' })).rejects.toMatchObject({ code: 'config', message: expect.stringContaining('keeps its origin') });
    await expect(PostgresLedger.open({ ...opts, origin: 'has space' })).rejects.toMatchObject({ code: 'config' });
    await expect(PostgresLedger.open({ ...opts, schema: 'Bad-Schema' })).rejects.toMatchObject({ code: 'config' });
  });
});
