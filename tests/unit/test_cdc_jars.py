"""The committed CDC jar lock: well-formed, the versions that work, no flat-cache clashes."""

from collections import Counter

import pytest

from dfp.stack.cdc_jars import JAR_SETS, parse_dependency_list, read_lock
from dfp.stack.jars import JarError, MavenJar


def test_lock_has_both_sets_with_the_working_versions():
    sets = read_lock()
    assert set(sets) == set(JAR_SETS)
    broker, connect = sets["kafka-broker"], sets["kafka-connect"]
    assert "org.apache.kafka:kafka_2.13:4.4.0" in broker
    assert "org.apache.kafka:connect-runtime:4.3.0" in connect
    assert "io.debezium:debezium-connector-postgres:3.6.1.Final" in connect
    # Debezium 3.6.1 breaks on Connect 4.4: no Kafka artifact of another version sneaks in.
    kafka = [c for c in connect if c.startswith("org.apache.kafka:")]
    assert kafka and all(c.endswith(":4.3.0") for c in kafka)
    assert not [c for c in connect if c.startswith("io.confluent:")]


def test_lock_file_names_are_unique_per_set():
    for name, jars in read_lock().items():
        names = Counter(MavenJar.parse(c).file_name for c in jars)
        assert max(names.values()) == 1, name


def test_bad_lock_line_names_file_and_line(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("# comment\nkafka-broker org.a:b:1 tooshort\n")
    with pytest.raises(JarError, match=r"x.lock:2: expected 'set coordinate sha1'"):
        read_lock(lock)


def test_parse_maven_dependency_list():
    text = """
The following files have been resolved:
   org.apache.kafka:kafka-clients:jar:4.3.0:compile:/r/kafka-clients-4.3.0.jar
   io.netty:netty-native:jar:linux-x86_64:4.1.0:runtime:/r/n.jar
   junit:junit:jar:4.13:test:/r/junit.jar
"""
    assert [c for c, _ in parse_dependency_list(text)] == [
        "io.netty:netty-native:4.1.0:linux-x86_64",
        "org.apache.kafka:kafka-clients:4.3.0",
    ]
