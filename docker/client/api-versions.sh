#!/bin/bash
# The guides' first check, from the client container: every broker under its TiDB Cloud name.
# Expected (order may differ):
#   b1.usw2-az1.unique_name.aws.plc.tidbcloud.com:9093 (id: 1 rack: us-west-2a) -> (
#   b2.usw2-az2.unique_name.aws.plc.tidbcloud.com:9094 (id: 2 rack: us-west-2c) -> (
#   b3.usw2-az3.unique_name.aws.plc.tidbcloud.com:9095 (id: 3 rack: us-west-2b) -> (
/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server "${1:-gateway:9092}" | grep ' (id: '
