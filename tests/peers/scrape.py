"""Scrape a kswarm /metrics endpoint the way Prometheus would, and parse it
with Prometheus's own OpenMetrics parser (prometheus_client), so that a
malformed exposition fails here.

  scrape.py URL
      prints {"content_type": ..., "samples": [{"name", "labels", "value"}, ...]}
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    content_type = r.headers.get("Content-Type", "")
    text = r.read().decode("utf-8")
samples = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        samples.append({"name": s.name, "labels": dict(s.labels), "value": s.value, "type": family.type})
print(json.dumps({"content_type": content_type, "samples": samples}))
