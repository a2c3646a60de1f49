// The wire contract from Java: submit one plain-JSON task, print the one terminal record's value.
// Run with Java's single-file source launch and Apache Kafka's client jar on the class path:
//   java -cp 'LIBS/*' Contract.java BOOTSTRAP TASKS_TOPIC RESULTS_TOPIC TRACE_ID TASK_JSON
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Contract {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], tasks = args[1], results = args[2], traceId = args[3];
        Properties out = new Properties();
        out.put("bootstrap.servers", bootstrap);
        out.put("acks", "all");
        try (KafkaProducer<String, String> producer =
                new KafkaProducer<>(out, new StringSerializer(), new StringSerializer())) {
            producer.send(new ProducerRecord<>(tasks, traceId, args[4])).get();
        }
        Properties in = new Properties();
        in.put("bootstrap.servers", bootstrap);
        in.put("isolation.level", "read_committed");
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(in, new StringDeserializer(), new StringDeserializer())) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(results)) {
                partitions.add(new TopicPartition(results, info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Instant deadline = Instant.now().plusSeconds(120);
            while (Instant.now().isBefore(deadline)) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    if (traceId.equals(record.key())) {
                        System.out.println(record.value());
                        return;
                    }
                }
            }
        }
        System.err.println("no terminal record for " + traceId);
        System.exit(1);
    }
}
