import CaravanCore
import CaravanKnowledge
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// Generated documents through the HTTP API: stored and inline Mustache templates rendered over a run into HTML,
/// Markdown and (with Chromium) PDF artifacts; downloads with their content type, sandboxed; bounds; isolation.
enum DocumentChecks {
    static func generated(_ world: AgentWorld) async throws {
        let client = world.client
        let proposal = """
            <h1>Proposal for {{input.customer}}</h1>
            <p>{{steps.intro.output}}</p>
            <ul>{{#input.items}}<li>{{name}}: {{price}} EUR</li>{{/input.items}}</ul>
            """
        let stored = try await client.send(
            .put,
            "/v1/templates/proposal",
            json: JSONValue.object(["source": .string(proposal), "format": "html"]).canonicalText
        )
        #expect(stored.status == .created && stored.json["format"] == "html", "\(stored.json)")
        expectStatus(
            .ok,
            try await client.send(.put, "/v1/templates/proposal", json: proposal, contentType: "text/html")
        )
        let listed = try await client.send(.get, "/v1/templates").json["items"]?.arrayValue ?? []
        #expect(listed.compactMap { $0["name"]?.stringValue } == ["proposal"])

        let workflow = try await SecurityChecks.putWorkflow(
            world,
            "offer",
            """
            name: offer
            steps:
              - id: intro
                template: "Dear {{ input.customer }}, here is our offer."
              - id: page
                needs: [intro]
                document: {template: proposal, name: "offer-{{input.number}}.html"}
              - id: notes
                document:
                  source: "# Notes for {{input.customer}}\\n{{#input.items}}- {{name}}\\n{{/input.items}}"
                  format: markdown
            """
        )
        #expect(workflow.status == .created, "\(workflow.json)")
        let input: JSONValue = [
            "customer": "<script>alert(1)</script> Acme", "number": 42,
            "items": [["name": "Kettle", "price": 30], ["name": "Toaster", "price": 45]],
        ]
        let run = try await SecurityChecks.run(world, "offer", input: input)
        #expect(run["status"] == "succeeded", "\(run)")
        let runID = try #require(run["id"]?.stringValue)
        let items = try await client.send(.get, "/v1/runs/\(runID)/artifacts").json["items"]?.arrayValue ?? []
        #expect(Set(items.compactMap { $0["name"]?.stringValue }) == ["offer-42.html", "notes.md"], "\(items)")
        let page = try #require(items.first { $0["step"] == "page" })
        let pageID = try #require(page["id"]?.stringValue)
        let downloaded = try await client.execute(uri: "/v1/artifacts/\(pageID)", method: .get)
        let html = String(decoding: downloaded.body.readableBytesView, as: UTF8.self)
        #expect(downloaded.status == .ok && downloaded.headers[.contentType] == "text/html; charset=utf-8")
        #expect(downloaded.headers[.contentDisposition] == "attachment; filename=\"offer-42.html\"")
        #expect(downloaded.headers[.contentSecurityPolicy]?.hasPrefix("sandbox") == true)
        // Values are escaped in HTML; sections loop; earlier steps' outputs are in scope.
        #expect(html.contains("Proposal for &lt;script&gt;alert(1)&lt;/script&gt; Acme"), "\(html)")
        #expect(html.contains("<li>Kettle: 30 EUR</li><li>Toaster: 45 EUR</li>"), "\(html)")
        #expect(html.contains("Dear &lt;script&gt;"), "\(html)")
        #expect(page["size"] == .int(Int64(downloaded.body.readableBytes)), "\(page)")
        let notes = try #require(items.first { $0["step"] == "notes" }?["id"]?.stringValue)
        let markdown = try await client.execute(uri: "/v1/artifacts/\(notes)", method: .get)
        #expect(
            String(decoding: markdown.body.readableBytesView, as: UTF8.self)
                == "# Notes for <script>alert(1)</script> Acme\n- Kettle\n- Toaster\n"
        )
        #expect(run["steps"]?.arrayValue?.first { $0["id"] == "page" }?["output"]?["id"] == page["id"], "\(run)")

        // The console's run page lists the artifacts and downloads them.
        let owner = try #require(world.client as? AuthenticatedClient)
        let browser = ConsoleTestBrowser(owner.anonymous)
        _ = try await browser.signIn(email: "owner@example.com", password: AuthenticatedClient.ownerPassword)
        let runPage = try await browser.get("/runs/\(runID)")
        #expect(runPage.html.contains("id=\"artifacts-title\""), "\(runPage.html)")
        #expect(runPage.html.contains("href=\"/artifacts/\(pageID)\" download>offer-42.html</a>"))
        let viaConsole = try await browser.get("/artifacts/\(pageID)")
        #expect(viaConsole.status == .ok && viaConsole.html == html)
        #expect(try await browser.get("/artifacts/art_missing").status == .notFound)

        // PDF through Chromium, when installed (scripts/test installs it for the browser tests).
        let printed = try await SecurityChecks.putWorkflow(
            world,
            "printed",
            "name: printed\nsteps:\n  - id: pdf\n    document: {template: proposal, format: pdf}\n"
        )
        #expect(printed.status == .created, "\(printed.json)")
        let pdfRun = try await SecurityChecks.run(world, "printed", input: input)
        if PDFRenderer.executable != nil {
            #expect(pdfRun["status"] == "succeeded", "\(pdfRun)")
            let pdf = try #require(pdfRun["steps"]?.arrayValue?.first?["output"]?["id"]?.stringValue)
            let file = try await client.execute(uri: "/v1/artifacts/\(pdf)", method: .get)
            let bytes = Array(file.body.readableBytesView)
            #expect(file.headers[.contentType] == "application/pdf" && bytes.starts(with: Array("%PDF".utf8)))
            if PDFExtractor.executable != nil {
                let text = try await PDFExtractor.text(of: bytes)
                #expect(text.contains("Proposal for <script>alert(1)</script> Acme"), "\(text)")
                #expect(text.contains("Toaster: 45 EUR"), "\(text)")
            }
        } else {
            #expect(pdfRun["error"]?["code"] == "unsupported_media_type", "\(pdfRun)")
        }

        // Refused at definition: both or neither of template and source, a bad format, a malformed template.
        let invalid = try await SecurityChecks.putWorkflow(
            world,
            "broken",
            """
            name: broken
            steps:
              - id: a
                document: {template: proposal, source: "x", format: docx}
              - id: b
                document: {source: "{{#open}} never closed"}
            """
        )
        let pointers = Set((invalid.json["errors"]?.arrayValue ?? []).compactMap { $0["pointer"]?.stringValue })
        #expect(
            pointers.isSuperset(of: [
                "/steps/0/document/template", "/steps/0/document/format", "/steps/1/document/source",
            ]),
            "\(invalid.json)"
        )
        let tooManyTags = String(repeating: "{{x}}", count: 1_001)
        let tags = try await client.send(
            .put,
            "/v1/templates/big",
            json: JSONValue.object(["source": .string(tooManyTags)]).canonicalText
        )
        #expect(tags.status.code == 422 && tags.json["errors"]?.arrayValue?.first?["pointer"] == "/source")
        // A template that loops over a loop over a loop stops at the artifact limit, in memory as on disk.
        let explode = try await SecurityChecks.putWorkflow(
            world,
            "explode",
            """
            name: explode
            steps:
              - id: big
                document:
                  source: "{{#input.n}}{{#input.n}}{{#input.n}}{{#input.n}}0123456789{{/input.n}}{{/input.n}}{{/input.n}}{{/input.n}}"
            """
        )
        #expect(explode.status == .created, "\(explode.json)")
        let exploded = try await SecurityChecks.run(
            world,
            "explode",
            input: ["n": .array((0..<200).map { .int(Int64($0)) })]
        )
        #expect(exploded["status"] == "failed" && exploded["error"]?["code"] == "output_too_large", "\(exploded)")
        // A template deleted: the step fails with a clear code.
        expectStatus(.noContent, try await client.send(.delete, "/v1/templates/proposal"))
        let orphan = try await SecurityChecks.run(world, "printed", input: input)
        #expect(orphan["error"]?["code"] == "template_not_found", "\(orphan)")

        // Another organization sees none of it.
        let other = try await world.otherOrganization()
        #expect(try await client.send(.get, "/v1/artifacts/\(pageID)", headers: other).status == .notFound)
        #expect(try await client.send(.get, "/v1/runs/\(runID)/artifacts", headers: other).status == .notFound)
        #expect(try await client.send(.get, "/v1/templates", headers: other).json["items"] == [])
    }
}
