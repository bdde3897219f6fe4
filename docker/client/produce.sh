#!/bin/bash
# The guides' produce.sh, in the client container: create test-topic (3 partitions, replication 3)
# and produce 10 messages, one producer each, through the gateway.
BROKER_LIST=$1 # "{broker_address1},{broker_address2}..."
KAFKA_DIR=/opt/kafka/bin
TOPIC="test-topic"

create_topic() {
    echo "Creating topic if it does not exist..."
    $KAFKA_DIR/kafka-topics.sh --create --topic $TOPIC --bootstrap-server $BROKER_LIST --if-not-exists --partitions 3 --replication-factor 3
}

produce_messages() {
    echo "Producing messages to the topic..."
    for ((chrono=1; chrono <= 10; chrono++)); do
        message="Test message "$chrono
        echo "Create "$message
        echo $message | $KAFKA_DIR/kafka-console-producer.sh --broker-list $BROKER_LIST --topic $TOPIC
    done
}
create_topic
produce_messages
