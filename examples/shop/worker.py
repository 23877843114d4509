"""The shop's worker process: performs background jobs and reports them with
DogStatsD as `shop.jobs.<job>.perform`, which the manifest's mapping turns
into `shop.jobs.perform` tagged `job:<job>`. It logs one JSON line per job,
whose fields the sidecar keeps as the log record's attributes."""

import json
import random
import time

from datadog import DogStatsd

statsd = DogStatsd()  # DD_AGENT_HOST, DD_DOGSTATSD_PORT, DD_ENV, DD_VERSION
JOBS = ["send_receipt", "sync_inventory", "charge_card"]

if __name__ == "__main__":
    print(json.dumps({"level": "info", "message": "worker started"}), flush=True)
    while True:
        job = random.choice(JOBS)
        started = time.monotonic()
        time.sleep(random.uniform(0.05, 0.3))
        statsd.increment(f"shop.jobs.{job}.perform")
        statsd.timing("shop.jobs.duration", (time.monotonic() - started) * 1000, tags=[f"job:{job}"])
        statsd.gauge("shop.queue.depth", random.randint(0, 40))
        print(json.dumps({"level": "info", "message": f"performed {job}", "job": job,
                          "duration_ms": round((time.monotonic() - started) * 1000, 1)}), flush=True)
