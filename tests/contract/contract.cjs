// The wire contract from Node (kafkajs): submit one plain-JSON task, print its terminal record.
//   NODE_PATH=<folder with kafkajs> node contract.cjs BOOTSTRAP TASKS RESULTS TRACE_ID TASK_JSON
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, tasks, results, traceId, task] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: "contract-node", brokers: [bootstrap],
                            logLevel: logLevel[process.env.KAFKAJS_LOG || "ERROR"] });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic: tasks, acks: -1, messages: [{ key: traceId, value: task }] });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `contract-node-${traceId}` });
  await consumer.connect();
  await consumer.subscribe({ topic: results, fromBeginning: true });
  setTimeout(() => {
    console.error(`no terminal record for ${traceId}`);
    process.exit(1);
  }, 120000);
  await consumer.run({
    eachMessage: async ({ message }) => {
      if (message.key && message.key.toString() === traceId) {
        // disconnect() here would wait for this very handler to return: exit once printed
        process.stdout.write(`${message.value.toString()}\n`, () => process.exit(0));
      }
    },
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
