/// The runs' templates: the list and its rows, a run's page, an approval, the inbox.
extension RunPages {
    static let templates: [String: String] = [
        "run-row": """
        <tr data-run-id="{{id}}" data-name="{{name}}" data-status="{{status}}">
        <td><a href="{{href}}"><code>{{id}}</code></a></td>
        <td>{{name}} <span class="muted">{{kind}}</span></td>
        <td><span class="badge status-{{status}}" data-field="status">{{status}}</span></td>
        <td>{{{created}}}</td>
        <td data-field="duration">{{duration}}</td>
        <td class="clip" title="{{error}}">{{error}}</td>
        </tr>
        """,
        "runs-rows": """
        {{#runs}}{{> run-row}}{{/runs}}
        """,
        "runs": """
        <h1>Runs</h1>
        {{> problem}}
        <form method="get" action="/runs" class="filters" role="search">
        <label for="q">Run id</label><input id="q" name="q" placeholder="run_…" size="30">
        <label for="workflow">Workflow</label><input id="workflow" name="workflow" value="{{workflow}}" size="14">
        <label for="agent">Agent</label><input id="agent" name="agent" value="{{agent}}" size="14">
        <label for="status">Status</label>
        <select id="status" name="status"><option value="">any</option>{{#statuses}}<option{{#selected}} selected{{/selected}}>{{value}}</option>{{/statuses}}</select>
        <label for="from">From (UTC)</label><input id="from" name="from" type="datetime-local" value="{{from}}">
        <label for="to">To (UTC)</label><input id="to" name="to" type="datetime-local" value="{{to}}">
        <button type="submit">Filter</button>
        {{#filtered}}<a href="/runs">Clear</a>{{/filtered}}
        </form>
        {{#empty}}
        {{#filtered}}<p class="empty">No run matches these filters.</p>{{/filtered}}
        {{^filtered}}
        <div class="empty">
        <p><strong>No runs yet.</strong> A run starts when a workflow or an agent is started.</p>
        <p>Create a first workflow on the <a href="/workflows">Workflows</a> page (there is an example to start from), then start it there; it appears here as it runs.</p>
        </div>
        {{/filtered}}
        {{/empty}}
        <table class="runs"{{#firstPage}} data-live-list{{/firstPage}}{{#empty}} hidden{{/empty}}>
        <caption class="visually-hidden">Runs, newest first</caption>
        <thead><tr><th scope="col">Run</th><th scope="col">Workflow or agent</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Duration</th><th scope="col">Error</th></tr></thead>
        <tbody>
        {{#runs}}{{> run-row}}{{/runs}}
        </tbody>
        </table>
        {{#next}}<p><a href="{{next}}" rel="next">Older runs</a></p>{{/next}}
        """,
        "json": """
        {{#large}}<details><summary>Show ({{#cut}}first 64 KiB{{/cut}}{{^cut}}large{{/cut}})</summary>{{/large}}<pre class="json">{{text}}</pre>{{#large}}</details>{{/large}}
        """,
        "run": """
        <p class="crumbs"><a href="/runs">Runs</a> / <code>{{id}}</code></p>
        <h1>{{name}} <span class="badge status-{{status}}" id="run-status">{{status}}</span></h1>
        <dl class="facts">
        <dt>Run</dt><dd><code>{{id}}</code></dd>
        <dt>{{kind}}</dt><dd><a href="{{nameHref}}">{{name}}</a> · version {{version}}</dd>
        {{#parent}}<dt>Started by</dt><dd><a href="{{href}}"><code>{{id}}</code></a></dd>{{/parent}}
        {{#thread}}<dt>Conversation</dt><dd><a href="{{href}}">Continue this thread</a></dd>{{/thread}}
        <dt>Created</dt><dd>{{{created}}}</dd>
        <dt>Started</dt><dd>{{{started}}}</dd>
        <dt>Finished</dt><dd>{{{finished}}}{{#duration}} · {{duration}}{{/duration}}</dd>
        </dl>
        {{#live}}<p class="muted" data-live-note>This page follows the run as it changes.</p>{{/live}}
        {{#error}}<div class="problem" role="alert"><strong>{{code}}</strong>{{#step}} in step <a href="#step-{{step}}">{{step}}</a>{{/step}}: {{message}}</div>{{/error}}
        {{#canWrite}}
        <div class="actions">
        {{#canCancel}}<form method="post" action="{{href}}/cancel" class="inline"><input type="hidden" name="_csrf" value="{{csrf}}"><button type="submit" class="danger">Cancel run</button></form>{{/canCancel}}
        {{#canRetry}}<form method="post" action="{{href}}/retry" class="inline"><input type="hidden" name="_csrf" value="{{csrf}}"><button type="submit" class="primary">Retry from the failed steps</button></form>{{/canRetry}}
        </div>
        {{/canWrite}}
        {{#hasPending}}
        <section aria-labelledby="pending-title" class="pending">
        <h2 id="pending-title">Waiting for a person</h2>
        {{#pending}}{{> approval}}{{/pending}}
        </section>
        {{/hasPending}}
        <section aria-labelledby="graph-heading"><h2 id="graph-heading">Steps</h2>
        <div class="scroll">{{{graph}}}</div>
        <h3>Timeline</h3>
        <div class="scroll">{{{timeline}}}</div>
        </section>
        {{#trace}}
        <section aria-labelledby="trace-title" class="trace">
        <h2 id="trace-title">Agent trace</h2>
        <p class="muted">{{count}} model turns · {{totalTokens}} tokens · ${{totalCost}}</p>
        <ol class="turns">
        {{#turns}}
        <li class="turn">
        <h3>Turn {{turn}} <span class="muted">{{model}}</span></h3>
        {{#pending}}<p class="muted">Waiting for the model…</p>{{/pending}}
        {{^pending}}<p class="muted">{{inputTokens}} in · {{outputTokens}} out · ${{cost}}{{#latency}} · {{latency}}{{/latency}} · {{finish}}</p>{{/pending}}
        {{#text}}<div class="answer">{{text}}</div>{{/text}}
        {{#hasCalls}}
        <ul class="calls">
        {{#calls}}
        <li class="call">
        <p><strong>Tool call</strong> <code>{{name}}</code>{{#approval}} <span class="badge approval-{{approval}}">{{approval}}</span>{{/approval}}</p>
        {{#arguments}}{{> json}}{{/arguments}}
        {{#hasResult}}<p><strong>Result</strong>{{#isError}} <span class="badge status-failed">error</span>{{/isError}}</p><pre class="json">{{result}}</pre>{{/hasResult}}
        </li>
        {{/calls}}
        </ul>
        {{/hasCalls}}
        </li>
        {{/turns}}
        </ol>
        {{#live}}<div class="delta" id="live-delta" aria-live="polite"></div>{{/live}}
        </section>
        {{/trace}}
        <section aria-labelledby="details-title">
        <h2 id="details-title">Step details</h2>
        {{#steps}}
        <article class="step" id="step-{{id}}">
        <h3><code>{{id}}</code> <span class="badge status-{{status}}">{{status}}</span></h3>
        <p class="muted">{{attempts}} attempt(s){{#duration}} · {{duration}}{{/duration}} · started {{{started}}}</p>
        {{#child}}<p>Child run <a href="{{href}}"><code>{{id}}</code></a></p>{{/child}}
        {{#error}}<div class="problem"><strong>{{code}}</strong>: {{message}}</div>{{/error}}
        {{#definition}}<details><summary>Definition</summary><pre class="json">{{text}}</pre></details>{{/definition}}
        {{#hasOutput}}<h4>Output</h4>{{#output}}{{> json}}{{#cut}}<p><a href="{{outputHref}}">The whole output</a></p>{{/cut}}{{/output}}{{/hasOutput}}
        </article>
        {{/steps}}
        </section>
        <section aria-labelledby="io-title">
        <h2 id="io-title">Input and output</h2>
        <h3>Input</h3>{{#input}}{{> json}}{{/input}}
        {{#hasOutput}}<h3>Output</h3>{{#output}}{{> json}}{{/output}}{{/hasOutput}}
        </section>
        {{#hasArtifacts}}
        <section aria-labelledby="artifacts-title">
        <h2 id="artifacts-title">Artifacts</h2>
        <table><thead><tr><th scope="col">File</th><th scope="col">Step</th><th scope="col">Type</th><th scope="col">Size</th></tr></thead>
        <tbody>{{#artifacts}}<tr><th scope="row"><a href="{{href}}" download>{{name}}</a></th><td><code>{{step}}</code></td><td>{{type}}</td><td>{{size}}</td></tr>{{/artifacts}}</tbody></table>
        </section>
        {{/hasArtifacts}}
        {{#canWrite}}
        <section aria-labelledby="signal-title">
        <h2 id="signal-title">Send a signal</h2>
        <form method="post" action="{{href}}/signal" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="signal-name">Signal name</label><input id="signal-name" name="name" required pattern="[A-Za-z0-9_.\\-]{1,64}">
        <label for="signal-data">Data (JSON, optional)</label><textarea id="signal-data" name="data" rows="3"></textarea>
        <button type="submit">Send signal</button>
        </form>
        </section>
        {{/canWrite}}
        <details class="events"><summary>Events ({{eventCount}})</summary>
        <table><thead><tr><th scope="col">#</th><th scope="col">Type</th><th scope="col">Step</th><th scope="col">At</th><th scope="col">Data</th></tr></thead>
        <tbody>{{#events}}<tr><td>{{seq}}</td><td>{{type}}</td><td>{{step}}</td><td>{{{at}}}</td><td class="clip">{{data}}</td></tr>{{/events}}</tbody></table>
        </details>
        """,
        "approval": """
        <div class="approval">
        {{#runHref}}<p><a href="{{runHref}}"><code>{{runID}}</code></a> · {{name}}</p>{{/runHref}}
        <p class="muted">Asked {{{at}}} · step <code>{{step}}</code></p>
        {{#tool}}<p>The agent wants to call <code>{{tool}}</code> with exactly these arguments:</p>{{#arguments}}{{> json}}{{/arguments}}{{/tool}}
        {{#message}}<p class="message">{{message}}</p>{{/message}}
        {{#canWrite}}
        <form method="post" action="{{#runHref}}{{runHref}}{{/runHref}}{{^runHref}}{{href}}{{/runHref}}/approve" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        {{#callID}}<input type="hidden" name="call_id" value="{{callID}}"><input type="hidden" name="arguments_digest" value="{{digest}}">{{/callID}}
        {{#runHref}}<input type="hidden" name="back" value="/approvals">{{/runHref}}
        <button type="submit" name="decision" value="approve" class="primary">Approve</button>
        <button type="submit" name="decision" value="reject" class="danger">Reject</button>
        </form>
        {{/canWrite}}
        </div>
        """,
        "approvals": """
        <h1>Approvals</h1>
        <p class="muted">Every run of this organization waiting for a person, oldest first.</p>
        {{#empty}}<div class="empty"><p><strong>Nothing waits for you.</strong> Runs of workflows with an <code>approval</code> step, and agents whose tools need approval, appear here when they ask.</p></div>{{/empty}}
        {{#items}}{{> approval}}{{/items}}
        """,
    ]
}
