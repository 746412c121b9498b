import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// The console's stylesheet and script, compiled into the binary and served with a content hash as their ETag.
enum ConsoleAssets {
    struct Asset: Sendable {
        var contentType: String
        var body: String
        var etag: String

        init(_ contentType: String, _ body: String) {
            self.contentType = contentType
            self.body = body
            let digest = SHA256.hash(data: Data(body.utf8))
            self.etag = "\"" + digest.prefix(12).map { String(format: "%02x", $0) }.joined() + "\""
        }
    }

    static let files: [String: Asset] = [
        "console.css": Asset("text/css; charset=utf-8", stylesheet),
        "console.js": Asset("text/javascript; charset=utf-8", script),
    ]

    static func register(in router: Router<ConsoleRequestContext>) {
        router.get("/assets/{file}") { request, context in
            guard let name = context.parameters.get("file"), let asset = files[name] else {
                return Response(status: .notFound)
            }
            if request.headers[.ifNoneMatch] == asset.etag {
                return Response(status: .notModified, headers: [.eTag: asset.etag, .cacheControl: "no-cache"])
            }
            return Response(
                status: .ok,
                headers: [.contentType: asset.contentType, .eTag: asset.etag, .cacheControl: "no-cache"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: asset.body))
            )
        }
    }

    static let stylesheet = """
        :root { color-scheme: light dark; --bg: #fbfbfc; --fg: #1b1e23; --muted: #5b6270; --line: #d8dbe0;
          --panel: #ffffff; --accent: #1f5fbf; --ok: #1d7a3a; --bad: #b3261e; --wait: #8a5a00; --run: #1f5fbf;
          --idle: #6b7280; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
        @media (prefers-color-scheme: dark) { :root { --bg: #14161a; --fg: #e7e9ee; --muted: #a3aab6;
          --line: #343944; --panel: #1c1f25; --accent: #7fb0ff; --ok: #5fd38a; --bad: #ff8a80; --wait: #f2c14e;
          --run: #7fb0ff; --idle: #9aa3b2; } }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--fg); }
        a { color: var(--accent); }
        a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible,
        summary:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
        .skip { position: absolute; left: -9999px; } .skip:focus { left: 1rem; top: 1rem; background: var(--panel); padding: .5rem; z-index: 9; }
        .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
        header.top { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; padding: .6rem 1.2rem;
          border-bottom: 1px solid var(--line); background: var(--panel); }
        .brand { font-weight: 700; text-decoration: none; color: var(--fg); }
        header nav ul { display: flex; gap: .9rem; list-style: none; margin: 0; padding: 0; flex-wrap: wrap; }
        header nav a { text-decoration: none; padding: .2rem .1rem; }
        header nav a[aria-current="page"] { font-weight: 700; border-bottom: 2px solid var(--accent); }
        .account { margin-left: auto; display: flex; gap: .8rem; align-items: center; }
        main { padding: 1rem 1.2rem 3rem; max-width: 1200px; }
        h1 { font-size: 1.5rem; margin: .4rem 0 1rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
        .muted { color: var(--muted); }
        .narrow { max-width: 26rem; margin: 3rem auto; }
        form.stack { display: grid; gap: .4rem; max-width: 40rem; }
        form.inline { display: inline-flex; gap: .4rem; align-items: center; }
        form.filters { display: flex; flex-wrap: wrap; gap: .4rem .6rem; align-items: center; margin-bottom: 1rem; }
        input, select, textarea, button { font: inherit; color: inherit; }
        input, select, textarea { background: var(--panel); border: 1px solid var(--line); border-radius: 4px; padding: .3rem .45rem; }
        textarea { width: 100%; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
        button { border: 1px solid var(--line); background: var(--panel); border-radius: 4px; padding: .3rem .8rem; cursor: pointer; }
        button.primary { background: var(--accent); color: var(--bg); border-color: var(--accent); }
        button.danger { border-color: var(--bad); color: var(--bad); }
        button.link { border: none; background: none; color: var(--accent); padding: 0; }
        table { border-collapse: collapse; width: 100%; background: var(--panel); }
        th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        td.clip { max-width: 22rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
        .badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; border: 1px solid currentColor; }
        .status-succeeded { color: var(--ok); } .status-failed, .status-cancelled { color: var(--bad); }
        .status-running, .status-queued { color: var(--run); } .status-waiting { color: var(--wait); }
        .status-pending, .status-skipped { color: var(--idle); }
        .approval-approved { color: var(--ok); } .approval-refused { color: var(--bad); } .approval-requested { color: var(--wait); }
        .problem { border-left: 4px solid var(--bad); background: var(--panel); padding: .5rem .8rem; margin: .8rem 0; }
        .empty { border: 1px dashed var(--line); padding: 1rem; border-radius: 6px; }
        .flash { border-left: 4px solid var(--ok); padding: .5rem .8rem; background: var(--panel); }
        .secret { font-family: ui-monospace, monospace; word-break: break-all; border: 2px solid var(--wait); padding: .6rem; }
        dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
        dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
        pre.json, pre.code { background: var(--panel); border: 1px solid var(--line); padding: .6rem; overflow: auto;
          max-height: 28rem; white-space: pre-wrap; word-break: break-word; font-size: .85rem; }
        .scroll { overflow-x: auto; }
        svg text { fill: var(--fg); font-size: 12px; } svg text.sub { fill: var(--muted); font-size: 11px; }
        svg .edge { fill: none; stroke: var(--line); stroke-width: 2; }
        svg .node rect { fill: var(--panel); stroke: currentColor; stroke-width: 2; }
        svg .bar rect { fill: currentColor; opacity: .75; } svg .retry { stroke: var(--bad); stroke-width: 2; }
        svg .axis { stroke: var(--line); } svg .series { fill: var(--accent); } svg .series2 { fill: var(--ok); }
        .actions { display: flex; gap: .6rem; margin: 1rem 0; }
        .approval, .step, .turn, .call, .card { border: 1px solid var(--line); background: var(--panel); border-radius: 6px; padding: .6rem .8rem; margin: .6rem 0; }
        .turns, .calls { list-style: none; padding: 0; }
        .answer, .delta { white-space: pre-wrap; }
        .delta:empty { display: none; } .delta { border-left: 3px solid var(--run); padding-left: .6rem; }
        .editor-error { color: var(--bad); }
        .crumbs { margin: 0; color: var(--muted); }
        ol.listing { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85rem; background: var(--panel);
          border: 1px solid var(--line); padding: .4rem .4rem .4rem 3.5rem; max-height: 28rem; overflow: auto; }
        ol.listing code { white-space: pre-wrap; } ol.listing li.has-error { background: color-mix(in srgb, var(--bad) 12%, transparent); }
        ol.listing li.has-error::marker { color: var(--bad); font-weight: 700; } ol.listing ul.editor-error { margin: .1rem 0 .3rem; }
        """

    /// Live updates over the API's streams, and times in the browser's time zone. Pages work without it.
    static let script = """
        "use strict";
        (function () {
          var types = ["run.queued", "run.started", "run.succeeded", "run.failed", "run.cancelled", "run.waiting",
            "step.started", "step.succeeded", "step.failed", "step.retrying", "step.waiting", "step.skipped",
            "signal.received", "llm.request", "llm.response", "llm.delta", "tool.call", "tool.result",
            "tool.approval_requested"];

          function localTimes(root) {
            root.querySelectorAll("time[datetime]").forEach(function (el) {
              var d = new Date(el.getAttribute("datetime"));
              if (!isNaN(d)) { el.textContent = d.toLocaleString(); el.title = el.getAttribute("datetime"); }
            });
          }

          function follow(url, handle) {
            if (!window.EventSource) { return; }
            var source = new EventSource(url);
            types.forEach(function (type) {
              source.addEventListener(type, function (message) {
                var data = {};
                try { data = JSON.parse(message.data); } catch (e) { return; }
                handle(type, data);
              });
            });
            source.addEventListener("shutdown", function () { source.close(); setTimeout(function () { follow(url, handle); }, 1500); });
            // The organization's stream starts at its newest event: what changed between drawing the page and
            // opening the stream (or while it reconnected) is caught by drawing again once it is open.
            source.addEventListener("open", function () { handle("stream.open", {}); });
            return source;
          }

          function runsList() {
            var table = document.querySelector("table.runs[data-live-list]");
            if (!table) { return; }
            var body = table.querySelector("tbody");
            var waiting = false;
            var last = 0;
            function refresh() {
              waiting = false;
              last = Date.now();
              fetch("/runs/rows" + location.search, { credentials: "same-origin" })
                .then(function (r) { return r.ok ? r.text() : null; })
                .then(function (html) {
                  if (html === null) { return; }
                  body.innerHTML = html;
                  localTimes(body);
                  table.hidden = body.children.length === 0;
                });
            }
            follow("/live/events", function (type) {
              if ((type.indexOf("run.") !== 0 && type !== "step.waiting" && type !== "stream.open") || waiting) { return; }
              waiting = true;
              setTimeout(refresh, Math.max(100, 1000 - (Date.now() - last)));
            });
          }

          // Fetches this page again and swaps its <main> in, keeping open <details> open. Calls done(stillLive).
          function reloadMain(done) {
            fetch(location.pathname + location.search, { credentials: "same-origin" })
              .then(function (r) { return r.ok ? r.text() : null; })
              .then(function (html) {
                if (!html) { return; }
                var doc = new DOMParser().parseFromString(html, "text/html");
                var fresh = doc.querySelector("main");
                var main = document.querySelector("main");
                if (!fresh || !main) { return; }
                var open = [];
                main.querySelectorAll("details[open]").forEach(function (d, i) { open.push(i); });
                main.innerHTML = fresh.innerHTML;
                var details = main.querySelectorAll("details");
                open.forEach(function (i) { if (details[i]) { details[i].open = true; } });
                localTimes(main);
                done(doc.body.hasAttribute("data-live"));
              });
          }

          function runPage(id) {
            var pending = null;
            var source = follow("/live/runs/" + encodeURIComponent(id), function (type, event) {
              if (type === "stream.open") { return; }
              if (type === "llm.delta") {
                var delta = document.getElementById("live-delta");
                if (delta && event.data && typeof event.data.text === "string") { delta.textContent += event.data.text; }
                return;
              }
              if (pending !== null) { return; }
              pending = setTimeout(function () {
                pending = null;
                reloadMain(function (live) {
                  if (!live) { document.body.removeAttribute("data-live"); if (source) { source.close(); } }
                });
              }, 250);
            });
          }

          // The approvals inbox: drawn again when runs change, at most once a second.
          function inboxPage() {
            var waiting = false;
            var last = 0;
            follow("/live/events", function (type) {
              if (waiting || (type.indexOf("run.") !== 0 && type.indexOf("step.") !== 0
                  && type !== "tool.approval_requested" && type !== "signal.received" && type !== "stream.open")) { return; }
              waiting = true;
              setTimeout(function () {
                waiting = false;
                last = Date.now();
                reloadMain(function () {});
              }, Math.max(100, 1000 - (Date.now() - last)));
            });
          }

          document.addEventListener("DOMContentLoaded", function () {
            localTimes(document);
            var live = document.body.getAttribute("data-live") || "";
            if (live === "runs") { runsList(); }
            if (live.indexOf("run:") === 0) { runPage(live.slice(4)); }
            if (live === "approvals") { inboxPage(); }
          });
        })();
        """
}
