#!/usr/bin/env python3
"""Ingest a folder of media through a running umi-host, one flow per file.

Each file is one flow (docs/flows.md): `probe` and `checksum` first, then
`thumbnail` and `scenes` after `probe`, then `entry` (the ingest_entry
plugin in ./plugins, which writes OUT/entries/<file>.json from its upstream
steps) after `probe` and `checksum`. The host runs each step on its own
grant, side by side where the pool has room; this script only waits for one
result per file. A file without video has no thumbnail or cuts (those steps
end `unsupported`); any other failed step counts. It shows progress on
stderr and writes OUT/report.json and OUT/index.html (a contact sheet:
thumbnail, duration, codecs and cut count per file). Exits 1 if any step
failed.

    ingest.py FOLDER --rpc tcp://127.0.0.1:5557 --out ingest-report
"""
import argparse
import html
import json
import os
import sys
import time

import msgpack
import zmq


class Host:
    """Tasks over the host's rpc socket; results come back on it."""

    def __init__(self, endpoint, timeout_s):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.timeout_ms = int(timeout_s * 1000)
        self.sent = 0

    def submit_flow(self, flow_id, steps):
        self.socket.send(msgpack.packb({"v": 1, "id": flow_id, "flow": steps}))
        self.sent += 1

    def results(self, count, progress):
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        for done in range(1, count + 1):
            if not poller.poll(self.timeout_ms):
                raise TimeoutError(f"no result within {self.timeout_ms / 1000} s")
            result = msgpack.unpackb(self.socket.recv())
            progress(done)
            yield result


def progress_printer(phase, total):
    start = time.monotonic()
    tty = sys.stderr.isatty()

    def show(done):
        rate = done / max(time.monotonic() - start, 1e-6)
        line = f"{phase}: {done}/{total} files, {rate:.1f}/s"
        if tty:
            print("\r" + line, end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done == total:
            print(line, file=sys.stderr)

    return show


def file_flow(path, name, out_dir):
    """The steps of one file's flow."""
    thumb = os.path.join(out_dir, "thumbnails", os.path.splitext(name)[0] + ".jpg")
    return {
        "probe": {"plugin": "probe", "input": {"path": path}},
        "checksum": {"plugin": "checksum", "input": {"path": path}},
        "thumbnail": {"plugin": "thumbnail", "after": ["probe"],
                      "input": {"path": path, "at_fraction": 0.1, "width": 320, "output": thumb}},
        "scenes": {"plugin": "scenes", "after": ["probe"], "input": {"path": path}},
        "entry": {"plugin": "ingest_entry", "after": ["probe", "checksum"], "input": {"name": name}},
    }


def run_flows(host, files, out_dir):
    """One flow per file; stores each step's output (or error) in files[name]. Returns the failed steps."""
    names = sorted(files)
    for number, name in enumerate(names):
        host.submit_flow(f"ingest/{number}", file_flow(files[name]["path"], name, out_dir))
    failed = 0
    for result in host.results(len(names), progress_printer("ingest", len(names))):
        entry = files[names[int(result["id"].split("/")[1])]]
        if "output" not in result:  # the flow was refused whole
            failed += 1
            entry.setdefault("errors", {})["flow"] = result["error"]
            print(f"ingest: {entry['path']}: {result['error']['code']}: {result['error']['message']}", file=sys.stderr)
            continue
        for step, outcome in result["output"]["steps"].items():
            if outcome["status"] == "ok":
                entry[step] = outcome["output"]
            elif step in ("thumbnail", "scenes") and outcome["error"]["code"] == "unsupported":
                continue  # no video: nothing to show, nothing failed
            else:
                failed += 1
                entry.setdefault("errors", {})[step] = outcome["error"]
    return failed


def contact_sheet(files, out_dir):
    rows = []
    for name, entry in sorted(files.items()):
        probe = entry.get("probe", {})
        codecs = ", ".join(s.get("codec_name", "?") for s in probe.get("streams", []))
        thumb = entry.get("thumbnail", {}).get("output")
        image = f'<img src="{html.escape(os.path.relpath(thumb, out_dir))}" alt="">' if thumb else ""
        cuts = len(entry.get("scenes", {}).get("cuts", [])) if "scenes" in entry else "-"
        errors = "; ".join(f"{p}: {e['code']}" for p, e in entry.get("errors", {}).items())
        rows.append(f"<tr><td>{image}</td><td>{html.escape(name)}</td><td>{probe.get('duration', 0):.2f} s</td>"
                    f"<td>{html.escape(codecs)}</td><td>{cuts}</td><td>{html.escape(errors)}</td></tr>")
    return ("<!doctype html><meta charset=utf-8><title>umi ingest</title>"
            "<style>body{font:14px sans-serif}td{padding:4px 8px;border-bottom:1px solid #ddd}"
            "img{max-width:160px}</style><h1>umi ingest</h1><table>"
            "<tr><th></th><th>file</th><th>duration</th><th>codecs</th><th>cuts</th><th>errors</th></tr>"
            + "".join(rows) + "</table>\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--rpc", default="tcp://127.0.0.1:5557", help="umi-host rpc endpoint")
    parser.add_argument("--out", default="ingest-report", help="where report.json, index.html and thumbnails go")
    parser.add_argument("--timeout-s", type=float, default=300, help="longest wait for one result")
    args = parser.parse_args()

    folder = os.path.abspath(args.folder)
    out_dir = os.path.abspath(args.out)
    os.makedirs(os.path.join(out_dir, "thumbnails"), exist_ok=True)
    names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    if not names:
        print(f"ingest: no files in {folder}", file=sys.stderr)
        return 1
    files = {name: {"path": os.path.join(folder, name)} for name in names}
    host = Host(args.rpc, args.timeout_s)

    failed = run_flows(host, files, out_dir)

    with open(os.path.join(out_dir, "report.json"), "w") as report:
        json.dump({"folder": folder, "files": files, "failed_steps": failed}, report, indent=2, default=str)
    with open(os.path.join(out_dir, "index.html"), "w") as sheet:
        sheet.write(contact_sheet(files, out_dir))
    print(os.path.join(out_dir, "index.html"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
