'use strict'
// LATER / FETCH LATER through node-postgres (pg), run by tests/drivers.rs against a pglater proxy.
//
// Usage: node pg_later.js CASE
// Connection: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (read by pg itself).
// Exit status 0 when every check of CASE holds; otherwise 1 with the first mismatch on stderr.
//
// Cases, and what each puts on the wire:
//   simple    client.query(text) without values: simple Query (the baseline LATER path).
//   extended  client.query({text, values}) and queryMode 'extended': Parse (unnamed) / Bind /
//             Describe portal / Execute / Sync for LATER and FETCH LATER (literal id and $1).
//   prepared  named statements ({name, text, values}): Parse once, then Bind / Describe /
//             Execute of the named statement on every run; rowMode 'array'.

const assert = require('node:assert/strict')
const pg = require('pg')

// One statement, every common type, three rows (shared with the psycopg test).
const RICH_SQL = require('node:fs')
  .readFileSync(require('node:path').join(__dirname, '..', 'rich_select.sql'), 'utf8')
  .trim()

// The same with parameters $1 int4, $2 text, $3 numeric, $4 date: values stored with the job.
const RICH_PARAM_SQL =
  'SELECT $1::int4 AS p_int, $2::text AS p_text, $3::numeric AS p_num, $4::date AS p_date, ' +
  's.* FROM (' + RICH_SQL + ') AS s'
const RICH_PARAMS = [7, 'it\'s "bound" ☃', '12.340', '2023-12-31']

const INSERT_ROWS = [
  [1, 'plain'],
  [2, 'it\'s "quoted"'],
  [3, null],
  [4, 'ünïcödé ☃'],
  [5, ''],
]

function log (msg) {
  process.stdout.write(msg + '\n')
}

function fields (res) {
  return res.fields.map((f) => ({
    name: f.name,
    dataTypeID: f.dataTypeID,
    dataTypeSize: f.dataTypeSize,
    dataTypeModifier: f.dataTypeModifier,
    format: f.format,
    tableID: f.tableID,
    columnID: f.columnID,
  }))
}

// deepStrictEqual whose failure keeps node's diff (actual = fetched/got, expected = direct/wanted).
function deq (actual, expected, label) {
  try {
    assert.deepStrictEqual(actual, expected)
  } catch (e) {
    e.message = `${label}\n${e.message}`
    throw e
  }
}

function same (label, direct, fetched) {
  deq(fields(fetched), fields(direct), `${label}: fields differ from the direct run`)
  deq(fetched.rows, direct.rows, `${label}: rows differ from the direct run`)
  assert.equal(fetched.command, direct.command, `${label}: command differs`)
  assert.equal(fetched.rowCount, direct.rowCount, `${label}: rowCount differs`)
  log(`ok: ${label}: same fields, rows and command as the direct run`)
}

function jobId (res, label) {
  assert.equal(res.fields.length, 1, `${label}: LATER returned ${res.fields.length} columns`)
  assert.equal(res.fields[0].name, 'job_id', `${label}: LATER column name`)
  assert.equal(res.fields[0].dataTypeID, 20, `${label}: job_id type OID (int8 is 20)`)
  assert.equal(res.rows.length, 1, `${label}: LATER returned ${res.rows.length} rows`)
  const row = res.rows[0]
  const v = Array.isArray(row) ? row[0] : row.job_id
  // pg returns int8 as a string
  assert.match(String(v), /^[1-9][0-9]*$/, `${label}: job_id ${v} is not a positive integer`)
  assert.equal(res.command, 'SELECT', `${label}: LATER command tag`)
  return String(v)
}

async function expectError (client, query, code, label) {
  try {
    await client.query(query)
  } catch (e) {
    assert.equal(e.code, code, `${label}: expected SQLSTATE ${code}, got ${e.code}: ${e.message}`)
    log(`ok: ${label}: SQLSTATE ${code} (${e.message})`)
    return e
  }
  throw new assert.AssertionError({ message: `${label}: expected SQLSTATE ${code}, but it succeeded` })
}

async function freshTable (client, name) {
  await client.query(`DROP TABLE IF EXISTS ${name}`)
  await client.query(`CREATE TABLE ${name} (id int PRIMARY KEY, name text)`)
}

async function checkInserted (client, table, label) {
  const res = await client.query({ text: `SELECT id, name FROM ${table} ORDER BY id`, rowMode: 'array' })
  deq(res.rows, INSERT_ROWS, `${label}: table ${table} contents`)
  log(`ok: ${label}: the jobs inserted ${INSERT_ROWS.length} rows with the bound values`)
}

async function waitAll (client, ids, label, named) {
  for (const id of ids) {
    const q = { text: 'FETCH LATER $1 WAIT', values: [id] }
    if (named) q.name = 'fetch_later_wait'
    const res = await client.query(q)
    assert.equal(res.command, 'INSERT', `${label}: job ${id} command`)
    assert.equal(res.rowCount, 1, `${label}: job ${id} rowCount`)
    assert.equal(res.fields.length, 0, `${label}: job ${id} returned fields`)
  }
}

async function commonErrors (client, extended) {
  const mode = extended ? { queryMode: 'extended' } : {}
  const slow = jobId(await client.query({ text: 'LATER SELECT pg_sleep(3) AS slept', ...mode }), 'LATER pg_sleep')
  const e = await expectError(client, { text: `FETCH LATER ${slow}`, ...mode }, '55000', 'unfinished job, literal id')
  assert.match(e.hint || '', /WAIT/, 'unfinished job: the HINT mentions WAIT')
  if (extended) {
    await expectError(client, { text: 'FETCH LATER $1', values: [slow] }, '55000', 'unfinished job, $1')
    await expectError(client, { text: 'FETCH LATER $1 WAIT', values: ['42'] }, '42704', 'unknown job, $1')
  }
  await expectError(client, { text: 'FETCH LATER 42 WAIT', ...mode }, '42704', 'unknown job, literal id')
  const ok = await client.query({ text: 'SELECT $1::text AS s', values: ['usable'] })
  deq(ok.rows, [{ s: 'usable' }], 'session usable after the errors')
  const res = await client.query({ text: `FETCH LATER ${slow} WAIT`, ...mode })
  deq(res.rows, [{ slept: '' }], 'FETCH LATER WAIT of the slow job')
  log('ok: the session is usable after the errors, and WAIT returns the slow job\'s row')
}

async function caseSimple (client) {
  await freshTable(client, 't_simple')
  const direct = await client.query(RICH_SQL)
  log(`direct run (simple): ${direct.fields.length} columns, ${direct.rows.length} rows`)
  const id = jobId(await client.query('LATER ' + RICH_SQL), 'LATER rich select')
  same('FETCH LATER <id> WAIT (simple)', direct, await client.query(`FETCH LATER ${id} WAIT`))
  const ids = []
  for (const [i, name] of INSERT_ROWS) {
    const lit = name === null ? 'NULL' : client.escapeLiteral(name)
    ids.push(jobId(await client.query(`LATER INSERT INTO t_simple VALUES (${i}, ${lit})`), 'LATER INSERT'))
  }
  for (const id of ids) {
    const res = await client.query(`FETCH LATER ${id} WAIT`)
    assert.equal(res.command, 'INSERT', `job ${id} command`)
  }
  await checkInserted(client, 't_simple', 'LATER INSERT (simple)')
  await commonErrors(client, false)
}

async function caseExtended (client) {
  await freshTable(client, 't_ext')
  const direct = await client.query({ text: RICH_SQL, queryMode: 'extended' })
  const directP = await client.query({ text: RICH_PARAM_SQL, values: RICH_PARAMS })
  log(`direct runs (extended): ${direct.fields.length} and ${directP.fields.length} columns`)

  const id = jobId(await client.query({ text: 'LATER ' + RICH_SQL, queryMode: 'extended' }), 'LATER rich select')
  const idP = jobId(
    await client.query({ text: 'LATER ' + RICH_PARAM_SQL, values: RICH_PARAMS }),
    'LATER rich select with parameters'
  )
  same('FETCH LATER <id> WAIT (extended)', direct, await client.query({ text: `FETCH LATER ${id} WAIT`, queryMode: 'extended' }))
  same('FETCH LATER $1 WAIT', direct, await client.query({ text: 'FETCH LATER $1 WAIT', values: [id] }))
  same('FETCH LATER $1 WAIT of the parameterised job', directP,
    await client.query({ text: 'FETCH LATER $1 WAIT', values: [idP] }))
  same('FETCH LATER <id> of the parameterised job', directP,
    await client.query({ text: `FETCH LATER ${idP}`, queryMode: 'extended' }))
  // The id as a JavaScript number cannot hold every int8; a BigInt is sent as its decimal text.
  same('FETCH LATER $1 WAIT (BigInt id)', directP,
    await client.query({ text: 'FETCH LATER $1 WAIT', values: [BigInt(idP)] }))

  const ids = []
  for (const row of INSERT_ROWS) {
    ids.push(jobId(await client.query({ text: 'LATER INSERT INTO t_ext VALUES ($1, $2)', values: row }), `LATER INSERT ${row}`))
  }
  assert.equal(new Set(ids).size, ids.length, `job ids repeat: ${ids}`)
  await waitAll(client, ids, 'LATER INSERT ($1, $2)', false)
  await checkInserted(client, 't_ext', 'LATER INSERT ($1, $2)')

  // Ordinary statements interleaved still work.
  const r = await client.query({ text: 'SELECT $1::int + 1 AS x', values: [41] })
  deq(r.rows, [{ x: 42 }], 'ordinary parameterised select')
  await commonErrors(client, true)
}

async function casePrepared (client) {
  await freshTable(client, 't_named')
  const direct = await client.query({ name: 'direct_rich', text: RICH_PARAM_SQL, values: RICH_PARAMS, rowMode: 'array' })
  log(`direct run (named): ${direct.fields.length} columns, ${direct.rows.length} rows`)

  const jobs = []
  for (let k = 0; k < 3; k++) {
    jobs.push(jobId(await client.query({
      name: 'later_rich', text: 'LATER ' + RICH_PARAM_SQL, values: RICH_PARAMS, rowMode: 'array',
    }), `named LATER run ${k + 1}`))
  }
  assert.equal(new Set(jobs).size, jobs.length, `a named LATER repeated a job id: ${jobs}`)
  for (const id of jobs) {
    same(`named FETCH LATER $1 WAIT (job ${id})`, direct, await client.query({
      name: 'fetch_rich', text: 'FETCH LATER $1 WAIT', values: [id], rowMode: 'array',
    }))
    same(`named FETCH LATER ${id} WAIT (literal)`, direct, await client.query({
      name: `fetch_literal_${id}`, text: `FETCH LATER ${id} WAIT`, rowMode: 'array',
    }))
  }
  // The direct statement again, after the LATER ones: still right.
  same('named direct statement after the LATER ones', direct,
    await client.query({ name: 'direct_rich', text: RICH_PARAM_SQL, values: RICH_PARAMS, rowMode: 'array' }))

  const ids = []
  for (const row of INSERT_ROWS) {
    ids.push(jobId(await client.query({
      name: 'later_insert', text: 'LATER INSERT INTO t_named VALUES ($1, $2)', values: row, rowMode: 'array',
    }), `named LATER INSERT ${row}`))
  }
  await waitAll(client, ids, 'named LATER INSERT', true)
  await checkInserted(client, 't_named', 'named LATER INSERT')
}

const CASES = { simple: caseSimple, extended: caseExtended, prepared: casePrepared }

async function main () {
  const name = process.argv[2]
  if (!CASES[name]) {
    process.stderr.write(`usage: node pg_later.js {${Object.keys(CASES).join('|')}}\n`)
    return 2
  }
  const version = require('pg/package.json').version
  log(`node ${process.version}, pg ${version}`)
  const client = new pg.Client({ connectionTimeoutMillis: 10000, application_name: 'pglater-driver-tests' })
  client.on('error', (e) => process.stderr.write(`connection error: ${e.stack}\n`))
  await client.connect()
  log('connected')
  try {
    await CASES[name](client)
  } finally {
    await client.end()
  }
  log(`all checks of ${name} passed`)
  return 0
}

main().then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof assert.AssertionError) {
      process.stderr.write(`MISMATCH: ${e.message}\n`)
    } else {
      const extra = e.code ? ` (SQLSTATE ${e.code}${e.detail ? ', detail: ' + e.detail : ''}${e.hint ? ', hint: ' + e.hint : ''})` : ''
      process.stderr.write(`UNEXPECTED ERROR${extra}: ${e.stack}\n`)
    }
    process.exit(1)
  }
)
