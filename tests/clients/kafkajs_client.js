#!/usr/bin/env node
// The client matrix's kafkajs (pure JavaScript) counting client; the commands and output of
// confluent_kafka_client.py (no share groups: kafkajs has no share consumer). kafkajs comes from
// scripts/test-tools' .tools/node (NODE_PATH).
'use strict';
const { Kafka, logLevel } = require('kafkajs');
const readline = require('readline');

function args(argv) {
  const a = { command: argv[0], topic: 'matrix', group: 'matrix-group', count: 0, pauseAt: -1, timeout: 60 };
  for (let i = 1; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-(.)/g, (_, c) => c.toUpperCase());
    a[key] = ['count', 'pauseAt', 'timeout'].includes(key) ? Number(argv[i + 1]) : argv[i + 1];
  }
  return a;
}

const a = args(process.argv.slice(2));
const kafka = new Kafka({
  clientId: 'kgw-matrix',
  brokers: a.bootstrap.split(','),
  logLevel: logLevel.NOTHING,
  retry: { retries: 10 },
});

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function metadata() {
  const admin = kafka.admin();
  await admin.connect();
  const { brokers } = await admin.describeCluster();
  brokers.sort((x, y) => x.nodeId - y.nodeId);
  for (const b of brokers) console.log(`broker ${b.nodeId} ${b.host}:${b.port}`);
  await admin.disconnect();
}

async function produce() {
  // One message per send, awaited: acks=all (-1), and a failure is counted, never retried twice.
  // Not idempotent: kafkajs's idempotent producer asks the Metadata controller for a producer id,
  // and librdkafka's mock cluster names no controller that exists (kafkajs: broker 0 not found).
  const producer = kafka.producer({ maxInFlightRequests: 1 });
  await producer.connect();
  let errors = 0;
  for (let i = 0; i < a.count; i++) {
    if (i === a.pauseAt) {
      console.log(`paused at ${i}`);
      if ((await lines.next()).done) throw new Error('stdin closed while paused');
    }
    try {
      await producer.send({ topic: a.topic, acks: -1, messages: [{ value: `message-${i}` }] });
    } catch (e) {
      errors++;
    }
  }
  await producer.disconnect();
  console.log(`produced ${a.count - errors} errors ${errors}`);
}

async function consume() {
  const consumer = kafka.consumer({ groupId: a.group });
  await consumer.connect();
  await consumer.subscribe({ topic: a.topic, fromBeginning: true });
  const seen = new Map();
  let total = 0;
  const done = new Promise((resolve) => {
    consumer.run({
      eachMessage: async ({ message }) => {
        const v = message.value.toString();
        seen.set(v, (seen.get(v) || 0) + 1);
        if (++total >= a.count) resolve();
      },
    });
    setTimeout(resolve, a.timeout * 1000);
  });
  await done;
  await consumer.disconnect();
  let duplicates = 0;
  for (const n of seen.values()) duplicates += n - 1;
  console.log(`consumed ${total} distinct ${seen.size} duplicates ${duplicates}`);
}

({ metadata, produce, consume })[a.command]()
  .then(() => process.exit(0))
  .catch((e) => {
    console.error(`${e.name}: ${e.message}`);
    process.exit(1);
  });
