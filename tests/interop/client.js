#!/usr/bin/env node
// A ceir client in another language, built from proto/ceir/v1/*.proto alone (no generated
// Python, no shared code): it calls every RPC of ceir.v1.EquipmentIdentityRegister,
// ceir.v1.DeviceCheck and grpc.health.v1.Health, and prints the answers as one JSON object.
//
//   node client.js PORT [PLAN.json]
//
// PLAN.json (optional; the demo IMEIs otherwise): {"imeis": [...], "lookups": [...],
// "packed_bodies": [...], "stream_messages": [[...], ...]}. tests/test_interop.py uses it.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ROOT = path.resolve(__dirname, '..', '..');
const LOADER_OPTIONS = {
  keepCase: true, // field names as in the .proto (request_id, expires_at)
  longs: String,
  enums: String, // enum values by name: EQUIPMENT_STATUS_WHITELISTED
  defaults: true,
  oneofs: true,
  includeDirs: [path.join(ROOT, 'proto'), path.join(__dirname, 'proto')],
};

const DEMO_PLAN = {
  imeis: ['352099001761481', '35209900176148', '3520990017614812', '352099001761499',
    '860123450000012', '352099009999992', '35209900176148X', ''],
  lookups: ['35-209900-176148-1', '352099001761499', '35209900176148X'],
  packed_bodies: ['35209900176148', '35209900176149', '86012345000001'],
  stream_messages: [['352099001761481'], ['352099001761499', '860123450000012'], ['12']],
};

function load(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, LOADER_OPTIONS));
}

// Promise wrappers: the answer, or {error: {code, code_name, details}} for an RPC error.
function unary(client, method, request) {
  return new Promise((resolve) => {
    client[method](request, { deadline: Date.now() + 10000 }, (err, response) => {
      resolve(err ? { error: rpcError(err) } : response);
    });
  });
}

function rpcError(err) {
  return { code: err.code, code_name: grpc.status[err.code], details: err.details };
}

function stream(client, messages) {
  return new Promise((resolve) => {
    const call = client.CheckIMEIStream({ deadline: Date.now() + 10000 });
    const answers = [];
    call.on('data', (message) => answers.push(message));
    call.on('error', (err) => resolve({ error: rpcError(err), answers }));
    call.on('end', () => resolve({ answers }));
    for (const imeis of messages) {
      call.write({ requests: imeis.map((imei, i) => ({ imei, request_id: `s${i}` })) });
    }
    call.end();
  });
}

// An IMEI body (14 digits) as the 8-byte big-endian key CheckPacked takes.
function packedKeys(bodies) {
  const keys = Buffer.alloc(8 * bodies.length);
  bodies.forEach((body, i) => keys.writeBigUInt64BE(BigInt(body), 8 * i));
  return keys;
}

async function main() {
  const port = process.argv[2];
  if (!port) {
    console.error('usage: node client.js PORT [PLAN.json]');
    process.exit(2);
  }
  const plan = process.argv[3] ? JSON.parse(fs.readFileSync(process.argv[3], 'utf8')) : DEMO_PLAN;
  const address = `127.0.0.1:${port}`;
  const credentials = grpc.credentials.createInsecure();

  const ceir = load(['ceir/v1/eir.proto', 'ceir/v1/device_check.proto']).ceir.v1;
  const health = load('grpc/health/v1/health.proto').grpc.health.v1;
  const eir = new ceir.EquipmentIdentityRegister(address, credentials);
  const deviceCheck = new ceir.DeviceCheck(address, credentials);
  const healthClient = new health.Health(address, credentials);

  const result = { check_imei: [], lookup_device: [], health: {} };
  for (const [i, imei] of plan.imeis.entries()) {
    result.check_imei.push(await unary(eir, 'CheckIMEI', { imei, request_id: `u${i}` }));
  }
  result.check_imei_batch = await unary(eir, 'CheckIMEIBatch', {
    requests: plan.imeis.map((imei, i) => ({ imei, request_id: `b${i}`, imsi: '510101234567890' })),
  });
  result.check_imei_stream = await stream(eir, plan.stream_messages);
  const packed = await unary(eir, 'CheckPacked', { keys: packedKeys(plan.packed_bodies) });
  result.check_packed = packed.error ? packed : { results: [...packed.results] };
  for (const imei of plan.lookups) {
    result.lookup_device.push(await unary(deviceCheck, 'LookupDevice', { imei }));
  }
  for (const service of ['', 'ceir.v1.EquipmentIdentityRegister', 'ceir.v1.DeviceCheck']) {
    result.health[service] = await unary(healthClient, 'Check', { service });
  }
  for (const client of [eir, deviceCheck, healthClient]) client.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
