"""Checks the secured listeners of a broker from `scripts/kafka.sh start PORT`
with librdkafka (confluent-kafka, in build/venv from `scripts/broker.sh install`).

  build/venv/bin/python tests/peers/secure_check.py build/kafka-PORT/security.json

For every listener and SASL mechanism that should let a client in, it creates a
fresh topic over that listener, produces one record, reads it back and commits
its offset in a group (so the group coordinator is found over that listener
too). For every one that should keep a client out (a wrong password, an
untrusted CA, no client certificate, a server certificate for another name),
it checks that the client is refused and says with which error. One line per
case; exit status 1 if any case went otherwise.
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 15.0


def base(sec, listener):
    return {"bootstrap.servers": sec[listener], "socket.timeout.ms": 10000}


def roundtrip(conf, case):
    """Creates a topic, produces one record, consumes it, commits; returns a short summary or raises."""
    errors = []

    def on_error(err):
        errors.append(err)

    topic = f"secure-check-{case}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({**conf, "error_cb": on_error})
    for fut in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=TIMEOUT).values():
        fut.result(timeout=TIMEOUT)

    delivered = []
    p = Producer({**conf, "error_cb": on_error, "message.timeout.ms": int(TIMEOUT * 1000)})
    value = f"hello over {case}".encode()
    p.produce(topic, value=value, key=b"k", on_delivery=lambda err, msg: delivered.append((err, msg)))
    if p.flush(TIMEOUT) != 0 or not delivered:
        raise RuntimeError(f"produce did not complete; client errors: {errors}")
    err, msg = delivered[0]
    if err is not None:
        raise RuntimeError(f"produce failed: {err}")
    offset = msg.offset()

    group = f"secure-check-{case}-{uuid.uuid4().hex[:8]}"
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "error_cb": on_error})
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        got = None
        deadline = time.monotonic() + TIMEOUT
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error() is not None:
                raise RuntimeError(f"consume failed: {m.error()}")
            got = m
        if got is None:
            raise RuntimeError(f"no record within {TIMEOUT:.0f} s; client errors: {errors}")
        if got.value() != value:
            raise RuntimeError(f"read {got.value()!r}, expected {value!r}")
        c.commit(offsets=[TopicPartition(topic, 0, got.offset() + 1)], asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)[0].offset
        if committed != got.offset() + 1:
            raise RuntimeError(f"committed offset {committed}, expected {got.offset() + 1}")
    finally:
        c.close()
    return f"produced and consumed 1 record on {topic} at offset {offset}, committed in group {group}"


def refused(conf, case):
    """Expects the client to be kept out: returns the error it got, or raises if it got in."""
    errors = []

    def on_error(err):
        errors.append(err)

    # log_level 0: the error it got is in the case's line; librdkafka's own log would repeat it on each retry.
    p = Producer({**conf, "error_cb": on_error, "log_level": 0})
    deadline = time.monotonic() + TIMEOUT
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    try:
        md = p.list_topics(timeout=2)
    except KafkaException:
        md = None
    if md is not None and md.brokers:
        raise RuntimeError(f"the client got in (metadata with brokers {sorted(md.brokers)}); errors: {errors}")
    if not errors:
        raise RuntimeError(f"no error reported within {TIMEOUT:.0f} s, and no metadata")
    e = errors[0]
    return f"refused as expected: {e.name()}: {e.str()}"


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: secure_check.py build/kafka-PORT/security.json")
    with open(sys.argv[1]) as f:
        sec = json.load(f)
    ca = {"ssl.ca.location": sec["ca"]}
    mtls_cert = {"ssl.certificate.location": sec["client_cert"], "ssl.key.location": sec["client_key_encrypted"],
                 "ssl.key.password": sec["client_key_password"]}
    user = {"sasl.username": sec["user"], "sasl.password": sec["password"]}
    wrong = {"sasl.username": sec["user"], "sasl.password": sec["password"] + "-wrong"}
    oauth = {"sasl.mechanism": "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt": True,
             "sasl.oauthbearer.config": f"principal={sec.get('oauthbearer_sub', 'admin')}"}

    def ssl(listener, **kw):
        return {**base(sec, listener), "security.protocol": "SSL", **kw}

    def sasl(listener, mech, creds):
        proto = "SASL_SSL" if listener == "sasl_ssl" else "SASL_PLAINTEXT"
        conf = {**base(sec, listener), "security.protocol": proto, **(ca if proto == "SASL_SSL" else {})}
        if mech == "OAUTHBEARER":
            return {**conf, **oauth}
        return {**conf, "sasl.mechanism": mech, **creds}

    cases = [
        # (name, expect_ok, config)
        ("plaintext", True, base(sec, "plaintext")),
        ("ssl", True, ssl("ssl", **ca)),
        ("ssl-untrusted-ca", False, ssl("ssl", **{"ssl.ca.location": sec["other_ca"]})),
        ("mtls-encrypted-key", True, ssl("mtls", **ca, **mtls_cert)),
        ("mtls-plain-key", True, ssl("mtls", **ca, **{"ssl.certificate.location": sec["client_cert"],
                                                     "ssl.key.location": sec["client_key"]})),
        ("mtls-no-client-cert", False, ssl("mtls", **ca)),
        # The same CA in both: the second works, so the first is refused for the name alone.
        ("ssl-wrong-name-verified", False, ssl("ssl_wrong_name", **ca, **{"ssl.endpoint.identification.algorithm": "https"})),
        ("ssl-wrong-name-unverified", True, ssl("ssl_wrong_name", **ca, **{"ssl.endpoint.identification.algorithm": "none"})),
    ]
    for listener in ("sasl_ssl", "sasl_plaintext"):
        for mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"):
            cases.append((f"{listener}-{mech.lower()}", True, sasl(listener, mech, user)))
    cases += [
        ("sasl_ssl-plain-wrong-password", False, sasl("sasl_ssl", "PLAIN", wrong)),
        ("sasl_ssl-scram-sha-256-wrong-password", False, sasl("sasl_ssl", "SCRAM-SHA-256", wrong)),
        ("sasl_plaintext-scram-sha-512-wrong-password", False, sasl("sasl_plaintext", "SCRAM-SHA-512", wrong)),
    ]

    failed = 0
    for name, expect_ok, conf in cases:
        t = time.monotonic()
        try:
            what = roundtrip(conf, name) if expect_ok else refused(conf, name)
            status = "ok  "
        except Exception as e:  # noqa: BLE001 - every failure is a failed case
            what = f"{type(e).__name__}: {e}"
            status = "FAIL"
            failed += 1
        print(f"{status} {name:45} {time.monotonic() - t:5.1f}s  {what}", flush=True)
    print(f"secure_check.py: {len(cases) - failed} of {len(cases)} cases passed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
