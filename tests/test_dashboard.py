"""The dashboard as its users meet it: its address from init() and get_dashboard_url(),
its JSON endpoints and Prometheus metrics, the token it asks for when reachable from the
network (played by a caller without it), and its pages in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import psutil
import pytest

import rayling
from rayling._private import session

from .conftest import wait_until

pytestmark = pytest.mark.timeout(120)


def fetch(url: str, token: str | None = None, data: bytes | None = None,
          cookie: str | None = None):
    request = urllib.request.Request(url, data=data)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if cookie is not None:
        request.add_header("Cookie", cookie)
    opener = urllib.request.build_opener(_NoRedirect)
    return opener.open(request, timeout=20)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # (the test looks at the redirect itself)


def status_of(url: str, **kwargs) -> int:
    try:
        return fetch(url, **kwargs).status
    except urllib.error.HTTPError as e:
        return e.code


def wait_up(base: str, **kwargs) -> None:
    def up():
        try:
            return status_of(base + "/api/version", **kwargs) in (200, 401)
        except OSError:
            return False
    wait_until(up, timeout=30, what="the dashboard to answer")


@rayling.remote
def add(a, b):
    return a + b


@rayling.remote
def fails():
    raise ValueError("a failure the dashboard shows")


@rayling.remote
class Speaker:
    def __init__(self):
        print("speaker ready")

    def speak(self, text):
        print(text)
        return text


@rayling.remote
def busy(seconds: float) -> int:
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


@pytest.fixture
def dashboard():
    rayling.shutdown()  # (a test before may have left its own cluster)
    info = rayling.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    base = "http://" + rayling.get_dashboard_url()
    assert info["webui_url"] == info.dashboard_url == rayling.get_dashboard_url()
    assert not rayling.get_dashboard_url().startswith("http")
    wait_up(base)
    yield base
    rayling.shutdown()


def test_json_endpoints_and_metrics(dashboard):
    assert rayling.get([add.remote(1, 2), add.remote(3, 4)]) == [3, 7]
    version = json.load(fetch(dashboard + "/api/version"))
    assert version["ray_version"] == "2.60.0"
    node_id = rayling.get_runtime_context().get_node_id()

    def sampled():
        nodes = json.load(fetch(dashboard + "/api/cluster"))["nodes"]
        return nodes if nodes and nodes[0]["load"] and nodes[0]["history"] else None
    [node] = wait_until(sampled, what="a sample of the node's load")
    assert node["node_id"] == node_id and node["is_head"] and node["resources"]["CPU"] == 2
    assert 0 <= node["load"]["cpu_percent"] <= 100 and node["load"]["mem_total"] > 0
    query = "filter_keys=name&filter_predicates==&filter_values=add&limit=100"
    answer = json.load(fetch(f"{dashboard}/api/v0/tasks?{query}"))
    assert answer["result"] and {t["name"] for t in answer["data"]["result"]["result"]} == \
        {"add"}
    cut = json.load(fetch(f"{dashboard}/api/v0/tasks?{query.replace('limit=100', 'limit=1')}"))
    assert cut["data"]["result"]["total"] >= 2 and len(cut["data"]["result"]["result"]) == 1
    summary = json.load(fetch(dashboard + "/api/v0/tasks/summarize"))
    assert summary["data"]["result"]["cluster"]["summary"]["add"]["state_counts"][
        "FINISHED"] >= 2
    jobs = json.load(fetch(dashboard + "/api/jobs/"))
    assert [j["job_id"] for j in jobs] == [rayling.get_runtime_context().get_job_id()]
    assert json.load(fetch(f"{dashboard}/api/jobs/{jobs[0]['job_id']}"))["status"] == \
        "RUNNING"
    assert status_of(dashboard + "/api/v0/nonsense") == 404
    assert status_of(dashboard + "/api/v0/tasks?filter_keys=name") == 400
    metrics = fetch(dashboard + "/metrics").read().decode()
    assert f'rayling_node_cpu_utilization{{NodeId="{node_id}"' in metrics
    assert 'rayling_tasks{Name="add",State="FINISHED"}' in metrics
    logs = json.load(fetch(f"{dashboard}/api/v0/logs?node_id={node_id}"))
    assert "daemon.log" in logs["data"]["result"]["daemon"]


def test_the_dashboard_ends_with_its_cluster():
    rayling.shutdown()
    rayling.init(num_cpus=1, include_dashboard=True, dashboard_port=0)
    base = "http://" + rayling.get_dashboard_url()
    wait_up(base)
    daemon = psutil.Process(session._node.process.pid)
    [server] = [p for p in daemon.children() if "rayling.dashboard.server" in
                " ".join(p.cmdline())]
    rayling.shutdown()
    wait_until(lambda: not server.is_running() or server.status() == psutil.STATUS_ZOMBIE,
               what="the dashboard process to end")
    with pytest.raises(OSError):
        fetch(base + "/api/version")


def _routable_ip() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def test_off_loopback_every_request_needs_the_token():
    ip = _routable_ip()
    if ip is None:
        pytest.skip("this machine has no address other than loopback")
    rayling.shutdown()
    rayling.init(num_cpus=1, include_dashboard=True, dashboard_host=ip, dashboard_port=0)
    try:
        base = "http://" + rayling.get_dashboard_url()
        token = session._node.token
        wait_up(base)
        # A caller on the network without the token gets nothing.
        for path in ("/api/version", "/api/cluster", "/api/v0/tasks", "/api/jobs/",
                     "/metrics", "/api/v0/logs/file?filename=daemon.log"):
            assert status_of(base + path) == 401, path
            assert status_of(base + path, token="wrong" + token) == 401, path
            assert status_of(base + path, cookie="rayling_token=guess") == 401, path
        assert status_of(base + "/") == 302  # to the login page
        assert status_of(base + "/api/version", token=token) == 200
        # The login page: a wrong token is refused, the right one sets the cookie.
        form = urllib.parse.urlencode({"token": "nope"}).encode()
        try:
            fetch(base + "/login", data=form)
        except urllib.error.HTTPError as e:
            assert e.code == 302 and "failed" in e.headers["Location"]
        form = urllib.parse.urlencode({"token": token}).encode()
        with pytest.raises(urllib.error.HTTPError) as signed_in:
            fetch(base + "/login", data=form)
        cookie = signed_in.value.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert token not in cookie  # (a key derived from it, not the token)
        assert status_of(base + "/", cookie=cookie.split(";")[0]) == 200
    finally:
        rayling.shutdown()


def test_bad_dashboard_options():
    with pytest.raises(TypeError, match="include_dashboard"):
        rayling.init(include_dashboard="yes")
    with pytest.raises(ValueError, match="dashboard_port"):
        rayling.init(include_dashboard=True, dashboard_port=70000)


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and "
                    "chromium-driver (.ci/run installs them)")
def test_in_a_browser(tmp_path):
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    rayling.shutdown()
    rayling.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    try:
        base = "http://" + rayling.get_dashboard_url()
        wait_up(base)
        working = busy.remote(3.0)  # (the machine's CPU figure goes above zero)
        speaker = Speaker.remote()
        assert rayling.get(speaker.speak.remote("the actor speaks")) == "the actor speaks"
        failed = fails.remote()
        with pytest.raises(ValueError):
            rayling.get(failed)
        wait = WebDriverWait(browser, 30, poll_frequency=0.2)
        node_id = rayling.get_runtime_context().get_node_id()
        browser.get(base + "/#overview")

        def text_of(selector: str) -> str:
            """The element's text now (the overview redraws every second, so an element
            found a moment ago may be gone: look again)."""
            try:
                return browser.find_element(By.CSS_SELECTOR, selector).text
            except (NoSuchElementException, StaleElementReferenceException):
                return ""

        card = f"#node-{node_id}"

        def cpu_figure(_):
            text = text_of(f"{card} .cpu")
            return text and float(text.split()[0]) > 0 and text
        assert wait.until(cpu_figure)
        assert wait.until(lambda _: "ALIVE" in text_of(card) and
                          "Object store" in text_of(card))
        artifacts = os.environ.get("RAYLING_TEST_ARTIFACTS", str(tmp_path))
        os.makedirs(artifacts, exist_ok=True)
        browser.save_screenshot(os.path.join(artifacts, "dashboard-overview.png"))
        rayling.get(working)
        # A failed task: its row, then its error.
        browser.get(base + "/#tasks")
        row = wait.until(lambda b: b.find_element(
            By.CSS_SELECTOR, f'tr[data-task-id="{failed.task_id().hex()}"]'))
        assert "FAILED" in row.text
        row.click()
        error = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#task-detail .error"))
        assert "a failure the dashboard shows" in error.text
        # An actor's log.
        browser.get(base + "/#actors")
        row = wait.until(lambda b: b.find_element(
            By.CSS_SELECTOR, f'tr[data-actor-id="{speaker._ray_actor_id}"]'))
        row.click()
        log = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#actor-detail .log"))
        wait.until(lambda _: "the actor speaks" in log.text)
        assert "speaker ready" in log.text
    finally:
        browser.quit()
        rayling.shutdown()


@rayling.remote
def record(i: int) -> int:
    from rayling.util.metrics import Counter, Histogram

    Counter("items_done", description="Items done", tag_keys=("parity",)).inc(
        tags={"parity": "even" if i % 2 == 0 else "odd"})
    Histogram("item_seconds", "How long an item took", boundaries=[0.1, 1.0]).observe(
        0.5 if i else 5.0)
    return i


def test_application_metrics_are_exported(dashboard):
    from rayling.util.metrics import Gauge

    assert rayling.get([record.remote(i) for i in range(6)]) == list(range(6))
    Gauge("queue_depth", "Items waiting", tag_keys=("queue",)).set(7, tags={"queue": "in"})

    def exported():
        text = fetch(dashboard + "/metrics").read().decode()
        wanted = ['items_done_total{parity="even"} 3.0', 'items_done_total{parity="odd"} 3.0',
                  'item_seconds_bucket{le="1.0"} 5.0', 'item_seconds_bucket{le="+Inf"} 6.0',
                  "item_seconds_count 6.0", 'queue_depth{queue="in"} 7.0']
        return all(line in text for line in wanted)
    wait_until(exported, timeout=20, what="the application metrics at /metrics")


def test_metric_arguments_are_checked():
    from rayling.util.metrics import Counter, Gauge, Histogram

    with pytest.raises(ValueError, match="metric name"):
        Counter("no spaces allowed")
    with pytest.raises(TypeError, match="tag_keys"):
        Counter("checked_a", tag_keys="route")
    counter = Counter("checked_b", tag_keys=("route",))
    with pytest.raises(ValueError, match="> 0"):
        counter.inc(-1, tags={"route": "/"})
    with pytest.raises(ValueError, match="needs values for its tag keys"):
        counter.inc()
    with pytest.raises(ValueError, match="no tag keys"):
        counter.inc(tags={"route": "/", "other": "x"})
    counter.set_default_tags({"route": "/"}).inc()  # (the default fills the tag)
    with pytest.raises(TypeError, match="number"):
        Gauge("checked_c").set("high")
    with pytest.raises(ValueError, match="boundaries"):
        Histogram("checked_d", boundaries=[1.0, 0.5])
    with pytest.raises(ValueError, match="already exists"):
        Gauge("checked_b")


def test_metric_totals_outlive_the_processes_that_reported_them():
    from rayling._private import protocol as p
    from rayling._private.user_metrics import UserMetrics

    table = UserMetrics()
    first, second = object(), object()

    def report(conn, kind, value):
        table.report(conn, p.MetricsReport([p.MetricSeries(
            "m_" + kind, kind, "", ["k"], [], [(["a"], [value])])]))
    report(first, "counter", 2.0)
    report(second, "counter", 3.0)
    report(first, "gauge", 1.0)
    report(second, "gauge", 4.0)
    values = {r["name"]: r["points"][0][1] for r in table.rows()}
    assert values == {"m_counter": [5.0], "m_gauge": [4.0]}
    table.gone(first)
    table.gone(second)
    report(first, "counter", 1.0)  # (a later process of the same series adds on)
    values = {r["name"]: r["points"][0][1] for r in table.rows()}
    assert values == {"m_counter": [6.0]}  # the gauge went with its last reporter


def test_metrics_on_their_own_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    rayling.shutdown()
    rayling.init(num_cpus=1, include_dashboard=False, _metrics_export_port=port)
    try:
        assert rayling.get_dashboard_url() == ""  # (metrics only)
        base = f"http://127.0.0.1:{port}"

        def scraped():
            try:
                return "rayling_node_cpu_utilization{" in fetch(base + "/metrics").read(
                ).decode()
            except OSError:
                return False
        wait_until(scraped, timeout=30, what="the metrics on their own port")
        assert status_of(base + "/api/version") == 404  # (only the metrics there)
    finally:
        rayling.shutdown()
    with pytest.raises(ValueError, match="metrics export port"):
        rayling.init(_metrics_export_port=-5)


def test_a_rebound_domain_gets_nothing_on_loopback(dashboard):
    # A web page whose domain resolves to 127.0.0.1 asks with its own Host.
    request = urllib.request.Request(dashboard + "/api/v0/tasks",
                                     headers={"Host": "evil.example:8265"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=20)
    assert refused.value.code == 403
    assert status_of(dashboard.replace("127.0.0.1", "localhost") + "/api/version") == 200


def test_user_metrics_of_another_shape_are_left_out():
    from rayling._private import protocol as p
    from rayling._private.user_metrics import UserMetrics

    table = UserMetrics()
    one, two = object(), object()
    table.report(one, p.MetricsReport([p.MetricSeries(
        "h", "histogram", "", [], [1.0], [([], [1.0, 0.0, 0.5, 1.0])])]))
    table.report(two, p.MetricsReport([p.MetricSeries(  # (other buckets: left out)
        "h", "histogram", "", [], [1.0, 2.0], [([], [0.0, 1.0, 0.0, 1.5, 1.0])])]))
    table.report(two, p.MetricsReport([p.MetricSeries(  # (malformed: left out)
        "c", "counter", "", ["k"], [], [(["a"], [1.0, 2.0])])]))
    table.gone(two)
    table.gone(one)
    assert table.rows() == [{"name": "h", "kind": "histogram", "description": "",
                             "tag_keys": [], "boundaries": [1.0],
                             "points": [[[], [1.0, 0.0, 0.5, 1.0]]]}]
