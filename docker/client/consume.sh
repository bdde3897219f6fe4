#!/bin/bash
# The guides' consume.sh, in the client container: consume test-topic in a group through the gateway.
BROKER_LIST=$1 # "{broker_address1},{broker_address2}..."
KAFKA_DIR=/opt/kafka/bin
TOPIC="test-topic"
CONSUMER_GROUP="test-group"

consume_messages() {
    echo "Consuming messages from the topic..."
    $KAFKA_DIR/kafka-console-consumer.sh --bootstrap-server $BROKER_LIST --topic $TOPIC --from-beginning --timeout-ms 5000 --consumer-property group.id=$CONSUMER_GROUP
}
consume_messages
