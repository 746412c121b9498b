import CaravanCore
import CaravanKnowledge
import CaravanTestSupport
import Foundation
import HTTPTypes
import Testing
import ZIPFoundation

/// Knowledge collections through the HTTP API: documents chunked at headings and by size, HTML made text, the same
/// text not embedded twice, search by words, by vectors and both, filters, replacement, deletion, isolation.
enum KnowledgeChecks {
    static func embeddingCalls(_ world: AgentWorld) -> Int {
        world.openAI.requests.filter { $0.path.hasSuffix("/embeddings") }.count
    }

    static func add(
        _ world: AgentWorld,
        _ body: JSONValue
    ) async throws -> (
        status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields
    ) {
        try await world.client.send(.post, "/v1/collections/docs/documents", json: body.canonicalText)
    }

    static func search(_ world: AgentWorld, _ body: JSONValue) async throws -> [JSONValue] {
        let answer = try await world.client.send(.post, "/v1/collections/docs/search", json: body.canonicalText)
        #expect(answer.status == .ok, "\(answer.json)")
        return answer.json["items"]?.arrayValue ?? []
    }

    static func collections(_ world: AgentWorld) async throws {
        let client = world.client
        let settings = #"{"embedding_model": "local/m2", "chunking": {"size": 200, "overlap": 20}}"#
        expectStatus(.created, try await client.send(.put, "/v1/collections/docs", json: settings))
        expectStatus(.ok, try await client.send(.put, "/v1/collections/docs", json: settings))
        let noModel = try await client.send(.put, "/v1/collections/bad", json: "{}")
        #expect(noModel.json["errors"]?.arrayValue?.first?["pointer"] == "/embedding_model", "\(noModel.json)")
        let tiny = try await client.send(
            .put,
            "/v1/collections/bad",
            json: #"{"embedding_model": "local/m2", "chunking": {"size": 10}}"#
        )
        #expect(tiny.json["errors"]?.arrayValue?.first?["pointer"] == "/chunking/size", "\(tiny.json)")

        // Markdown: a chunk starts at each heading; a long paragraph is cut into windows that overlap.
        let long = (0..<60).map { "word\($0)" }.joined(separator: " ")
        let guide =
            "# Install\nRun the installer with apt.\n\n# Billing\nInvoices are sent monthly by email.\n\n\(long)\n"
        let added = try await add(
            world,
            ["name": "guide", "text": .string(guide), "format": "markdown", "metadata": ["team": "ops"]]
        )
        expectStatus(.created, added)
        let guideID = try #require(added.json["id"]?.stringValue)
        let document = try await client.send(.get, "/v1/collections/docs/documents/\(guideID)").json
        let chunks = (document["chunks"]?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }
        #expect(
            chunks.first?.hasPrefix("# Install") == true && chunks.contains { $0.hasPrefix("# Billing") },
            "\(chunks)"
        )
        #expect(chunks.allSatisfy { $0.count <= 200 }, "\(chunks.map(\.count))")
        let windows = chunks.filter { $0.contains("word1") || $0.contains("word5") }
        #expect(windows.count >= 2, "\(chunks)")
        if windows.count >= 2 {
            // The second window starts at a word inside the first's last 20 characters.
            let start = windows[1].prefix { !$0.isWhitespace }
            #expect(String(windows[0].suffix(20)).split(separator: " ").contains(start), "\(windows)")
        }

        // HTML: scripts and styles dropped, headings kept, entities decoded.
        let html = """
            <html><head><style>body { color: red }</style><script>alert("x")</script></head>
            <body><h2>Refunds</h2><p>Refunds take ten days &amp; arrive by transfer.</p></body></html>
            """
        let page = try await add(
            world,
            ["name": "refunds", "text": .string(html), "format": "html", "metadata": ["team": "support"]]
        )
        expectStatus(.created, page)
        let pageID = try #require(page.json["id"]?.stringValue)
        let pageChunks = try await client.send(.get, "/v1/collections/docs/documents/\(pageID)").json["chunks"]
        let pageText = (pageChunks?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
        #expect(pageText.contains("## Refunds") && pageText.contains("ten days & arrive"), "\(pageText)")
        #expect(!pageText.contains("alert") && !pageText.contains("color"))

        // The same text again is not embedded again.
        let calls = embeddingCalls(world)
        let copy = try await add(world, ["name": "copy", "text": .string(guide), "format": "markdown"])
        #expect(copy.json["embedded"] == false && copy.json["chunk_count"] == added.json["chunk_count"], "\(copy.json)")
        #expect(embeddingCalls(world) == calls)

        // Search: words, vectors (a chunk's own text is its nearest), both; filters.
        let byWords = try await search(world, ["query": "invoices", "mode": "text"])
        #expect(byWords.first?["text"]?.stringValue?.contains("Invoices") == true, "\(byWords)")
        let exact = try #require(chunks.last)
        let byVector = try await search(world, ["query": .string(exact), "mode": "vector", "k": 3])
        #expect(byVector.first?["text"] == .string(exact) && byVector.count == 3, "\(byVector)")
        #expect((byVector.first?["score"]?.numberValue ?? 0) > 0.999)
        let hybrid = try await search(world, ["query": "refunds", "k": 4])
        #expect(hybrid.first?["document"] == "refunds" && hybrid.first?["position"] == 0, "\(hybrid)")
        let filtered = try await search(world, ["query": "refunds", "mode": "text", "filter": ["team": "ops"]])
        #expect(filtered.isEmpty, "\(filtered)")
        let kept = try await search(world, ["query": "refunds", "mode": "text", "filter": ["team": "support"]])
        #expect(kept.count == 1)

        // A CSV's rows are records that name their columns; found by a value, and said with its column.
        let csv = "sku,name,bin\nA-7,\"Bolt, 8 mm\",shelf 12\nB-2,Washer,shelf 40\n"
        let table = try await add(world, ["name": "parts", "text": .string(csv), "format": "csv"])
        #expect(table.status == .created && table.json["chunk_count"] == 1, "\(table.json)")
        let part = try await search(world, ["query": "washer", "mode": "text"])
        #expect(part.first?["text"]?.stringValue?.contains("name: Washer\nbin: shelf 40") == true, "\(part)")
        expectStatus(
            .noContent,
            try await client.send(
                .delete,
                "/v1/collections/docs/documents/\(try #require(table.json["id"]?.stringValue))"
            )
        )

        // A multipart upload: the format from the file's name, the name from the field, metadata as JSON.
        func form(_ parts: [(String, String?, String)]) -> String {
            parts.map { name, filename, body in
                "--XyZ\r\nContent-Disposition: form-data; name=\"\(name)\""
                    + (filename.map { "; filename=\"\($0)\"" } ?? "") + "\r\n\r\n" + body + "\r\n"
            }.joined() + "--XyZ--\r\n"
        }
        func upload(_ body: String) async throws -> CatalogChecks.Answer {
            try await client.send(
                .post,
                "/v1/collections/docs/documents",
                json: body,
                contentType: "multipart/form-data; boundary=XyZ"
            )
        }
        let uploaded = try await upload(
            form([
                ("metadata", nil, #"{"team": "stores"}"#),
                ("file", "parts.csv", "sku,name\nZ-1,Sprocket\n"),
            ])
        )
        #expect(uploaded.status == .created && uploaded.json["name"] == "parts.csv", "\(uploaded.json)")
        #expect(uploaded.json["format"] == "csv" && uploaded.json["metadata"] == ["team": "stores"], "\(uploaded.json)")
        let sprocket = try await search(world, ["query": "sprocket", "mode": "text", "filter": ["team": "stores"]])
        #expect(sprocket.first?["text"] == "sku: Z-1\nname: Sprocket", "\(sprocket)")
        // A PDF is read by pdftotext (scripts/test installs Debian's poppler-utils); without it, a clear 415.
        let pdf = """
            %PDF-1.4
            1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
            2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
            3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R
              /Resources << /Font << /F1 5 0 R >> >> >> endobj
            4 0 obj << /Length 52 >> stream
            BT /F1 24 Tf 72 700 Td (Invoices go out monthly) Tj ET
            endstream endobj
            5 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj
            trailer << /Root 1 0 R >>
            %%EOF
            """
        let pdfUpload = try await upload(form([("file", "billing.pdf", pdf), ("metadata", nil, #"{"team": "pdf"}"#)]))
        if PDFExtractor.executable != nil {
            #expect(pdfUpload.status == .created && pdfUpload.json["format"] == "pdf", "\(pdfUpload.json)")
            let monthly = try await search(world, ["query": "monthly", "mode": "text", "filter": ["team": "pdf"]])
            #expect(monthly.first?["text"]?.stringValue?.contains("Invoices go out monthly") == true, "\(monthly)")
            let garbage = try await upload(form([("file", "scan.pdf", "%PDF-1.7 and nothing else")]))
            #expect(garbage.status.code == 422 && garbage.json["code"] == "document_unreadable", "\(garbage.json)")
            if let pdfID = pdfUpload.json["id"]?.stringValue {
                expectStatus(.noContent, try await client.send(.delete, "/v1/collections/docs/documents/\(pdfID)"))
            }
        } else {
            #expect(pdfUpload.status.code == 415 && "\(pdfUpload.json)".contains("poppler-utils"), "\(pdfUpload.json)")
        }
        try await wordDocuments(world)
        let stray = try await upload(form([("file", "a.txt", "x"), ("owner", nil, "me")]))
        #expect(stray.status.code == 422 && stray.json["errors"]?.arrayValue?.first?["pointer"] == "/owner")
        let truncated = try await upload("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno end")
        #expect(truncated.status.code == 400 && truncated.json["code"] == "invalid_request", "\(truncated.json)")
        let noBoundary = try await client.send(
            .post,
            "/v1/collections/docs/documents",
            json: "x",
            contentType: "multipart/form-data"
        )
        #expect(noBoundary.status.code == 400, "\(noBoundary.json)")
        let uploadedID = try #require(uploaded.json["id"]?.stringValue)
        expectStatus(.noContent, try await client.send(.delete, "/v1/collections/docs/documents/\(uploadedID)"))

        // A document fetched from a URL through the egress policy: its format from the media type, its name from
        // the path; a private address refused, a failed fetch and a body over the limit clear problems.
        try await RedirectTestServer.with { server in
            let fetched = try await add(world, ["url": .string(server.baseURL + "/echo"), "metadata": ["team": "web"]])
            #expect(fetched.status == .created, "\(fetched.json)")
            #expect(fetched.json["name"] == "echo" && fetched.json["format"] == "json", "\(fetched.json)")
            #expect(server.calls("/echo") == 1)
            let found = try await search(world, ["query": "GET", "mode": "text", "filter": ["team": "web"]])
            #expect(found.first?["text"]?.stringValue?.contains("method: GET") == true, "\(found)")
            let big = try await add(world, ["url": .string(server.baseURL + "/big/5000000")])
            #expect(big.status.code == 413, "\(big.json)")
            let missing = try await add(world, ["url": .string(server.baseURL + "/nothing-here")])
            #expect(missing.status.code == 422 && missing.json["code"] == "document_fetch_failed", "\(missing.json)")
            let fetchedID = try #require(fetched.json["id"]?.stringValue)
            expectStatus(.noContent, try await client.send(.delete, "/v1/collections/docs/documents/\(fetchedID)"))
        }
        let metadataAddress = try await add(world, ["url": "http://169.254.169.254/latest/meta-data"])
        #expect(metadataAddress.json["code"] == "egress_denied", "\(metadataAddress.json)")
        let both = try await add(world, ["name": "x", "text": "y", "url": "http://example.com/"])
        #expect(both.status.code == 422, "\(both.json)")
        let notHTTP = try await add(world, ["url": "file:///etc/passwd"])
        #expect(notHTTP.json["errors"]?.arrayValue?.first?["pointer"] == "/url", "\(notHTTP.json)")

        // Replacing a document by name, deleting one: their chunks leave the index.
        expectStatus(.created, try await add(world, ["name": "refunds", "text": "Returns are free."]))
        #expect(try await search(world, ["query": "refunds", "mode": "text"]).isEmpty)
        let names = try await client.send(.get, "/v1/collections/docs/documents").json["items"]?.arrayValue ?? []
        #expect(names.compactMap { $0["name"]?.stringValue }.sorted() == ["copy", "guide", "refunds"])
        expectStatus(.noContent, try await client.send(.delete, "/v1/collections/docs/documents/\(guideID)"))
        let afterDelete = try await search(world, ["query": "invoices", "mode": "text", "k": 5])
        #expect(afterDelete.allSatisfy { $0["document"] == "copy" } && afterDelete.count == 1, "\(afterDelete)")

        // An agent searches the collection and cites what it used; its output names the passages cited.
        try await world.putAgent(
            "librarian",
            """
            name: librarian
            model: local/m1
            instructions: Answer from the documents, citing them.
            tools:
              - knowledge: {name: search_docs, collection: docs, k: 2}
            """
        )
        world.openAI.respond { request in
            guard let result = request.lastToolResult else {
                return .toolCall("search_docs", arguments: #"{"query": "invoices"}"#, id: "call_search")
            }
            return .text(result.contains("Invoices are sent monthly") ? "Monthly, by email [1]." : "I do not know.")
        }
        let answered = try await world.runAgent("librarian", input: "When are invoices sent?")
        #expect(answered["output"]?["answer"] == "Monthly, by email [1].", "\(answered)")
        let citations = answered["output"]?["citations"]?.arrayValue ?? []
        #expect(
            citations.count == 1 && citations.first?["n"] == 1 && citations.first?["document"] == "copy",
            "\(answered)"
        )
        #expect(citations.first?["position"] == 1, "\(citations)")
        let runID = try #require(answered["id"]?.stringValue)
        let returned = try await world.events(runID).filter { $0["type"] == "tool.result" }
        #expect("\(returned)".contains("Invoices are sent monthly"), "the run's events record the passages returned")

        // A workflow's search step.
        let lookup = try await SecurityChecks.putWorkflow(
            world,
            "lookup",
            """
            name: lookup
            steps:
              - id: find
                search: {collection: docs, query: "{{ input.q }}", k: 1, mode: text}
            output: "{{ steps.find.output.items }}"
            """
        )
        #expect(lookup.status == .created, "\(lookup.json)")
        let found = try await SecurityChecks.run(world, "lookup", input: ["q": "monthly invoices"])
        #expect(found["status"] == "succeeded" && found["output"]?.arrayValue?.count == 1, "\(found)")
        #expect(found["output"]?.arrayValue?.first?["document"] == "copy", "\(found)")
        let invalid = try await SecurityChecks.putWorkflow(
            world,
            "broken",
            "name: broken\nsteps:\n  - id: find\n    search: {query: x, mode: fuzzy}\n"
        )
        let pointers = (invalid.json["errors"]?.arrayValue ?? []).compactMap { $0["pointer"]?.stringValue }
        #expect(
            pointers.contains("/steps/0/search/collection") && pointers.contains("/steps/0/search/mode"),
            "\(invalid.json)"
        )

        // Hostile input: a clear problem, the collection unchanged.
        let pdfAsText = try await add(world, ["name": "scan", "text": "%PDF-1.7", "format": "pdf"])
        #expect(pdfAsText.json["errors"]?.arrayValue?.first?["pointer"] == "/format", "\(pdfAsText.json)")
        let docxAsText = try await add(world, ["name": "scan", "text": "x", "format": "docx"])
        #expect(docxAsText.json["errors"]?.arrayValue?.first?["pointer"] == "/format", "\(docxAsText.json)")
        let unknownFormat = try await add(world, ["name": "scan", "text": "x", "format": "odt"])
        #expect(
            unknownFormat.status.code == 415 && unknownFormat.json["code"] == "unsupported_media_type",
            "\(unknownFormat.json)"
        )
        let huge = try await add(world, ["name": "huge", "text": .string(String(repeating: "a", count: 5 << 20))])
        #expect(huge.status.code == 413, "\(huge.status)")
        let broken = try await client.send(.post, "/v1/collections/docs/documents", json: "{not json")
        #expect(broken.status.code == 400)
        let badJSON = try await add(world, ["name": "data", "text": "{\"a\": ", "format": "json"])
        #expect(
            badJSON.status.code == 422 && badJSON.json["errors"]?.arrayValue?.first?["pointer"] == "/text",
            "\(badJSON.json)"
        )
        let badK = try await client.send(.post, "/v1/collections/docs/search", json: #"{"query": "x", "k": 0}"#)
        #expect(badK.json["errors"]?.arrayValue?.first?["pointer"] == "/k")
        let count = try await client.send(.get, "/v1/collections/docs/documents").json["items"]?.arrayValue?.count
        #expect(count == 2)

        // Another organization sees nothing of it.
        let other = try await world.otherOrganization()
        #expect(try await client.send(.get, "/v1/collections/docs", headers: other).status == .notFound)
        let foreign = try await client.send(
            .post,
            "/v1/collections/docs/search",
            json: #"{"query": "invoices"}"#,
            headers: other
        )
        #expect(foreign.status == .notFound)
        #expect(try await client.send(.get, "/v1/collections", headers: other).json["items"] == [])

        expectStatus(.noContent, try await client.send(.delete, "/v1/collections/docs"))
        #expect(try await client.send(.get, "/v1/collections/docs").status == .notFound)
    }

    /// A Word document: headings, list items and table rows kept; entities decoded. A ZIP bomb, a DTD and a file that
    /// is no archive are refused with clear problems, and the collection keeps what it had.
    static func wordDocuments(_ world: AgentWorld) async throws {
        func upload(_ filename: String, _ file: [UInt8]) async throws -> CatalogChecks.Answer {
            let head = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\n\r\n"
            return try await world.client.send(
                .post,
                "/v1/collections/docs/documents",
                bytes: Array(head.utf8) + file + Array("\r\n--XyZ--\r\n".utf8),
                contentType: "multipart/form-data; boundary=XyZ"
            )
        }
        let before = try await world.client.send(.get, "/v1/collections/docs/documents").json["items"]
        let body = """
            <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
            <w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Warranty</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Parts are covered for </w:t></w:r><w:r><w:rPr><w:b/></w:rPr>\
            <w:t>two years</w:t></w:r><w:r><w:t xml:space="preserve"> &amp; labour for one.</w:t></w:r></w:p>
            <w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr></w:pPr>\
            <w:r><w:t>Keep the receipt</w:t></w:r></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Model</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Term</w:t></w:r></w:p>\
            </w:tc></w:tr><w:tr><w:tc><w:p><w:r><w:t>Kettle K2</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r>\
            <w:t>3&#160;years</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
            <w:sectPr/></w:body></w:document>
            """
        let word = try zip([("[Content_Types].xml", Array("<Types/>".utf8)), ("word/document.xml", Array(body.utf8))])
        let added = try await upload("warranty.docx", word)
        #expect(added.status == .created && added.json["format"] == "docx", "\(added.json)")
        let id = try #require(added.json["id"]?.stringValue)
        let chunks = try await world.client.send(.get, "/v1/collections/docs/documents/\(id)").json["chunks"]
        let text = (chunks?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n\n")
        #expect(
            text
                == "# Warranty\n\nParts are covered for two years & labour for one.\n\n- Keep the receipt\n\n"
                + "Model | Term\n\nKettle K2 | 3\u{A0}years",
            "\(text)"
        )
        let found = try await search(world, ["query": "kettle", "mode": "text"])
        #expect(found.first?["document"] == "warranty.docx", "\(found)")
        expectStatus(.noContent, try await world.client.send(.delete, "/v1/collections/docs/documents/\(id)"))

        // 48 MiB of zeros deflate to a few dozen kilobytes: inflating stops at the cap.
        let bomb = try zip([("word/document.xml", [UInt8](repeating: 0x20, count: 48 << 20))])
        #expect(bomb.count < 1 << 20)
        let exploded = try await upload("bomb.docx", bomb)
        #expect(exploded.status.code == 413 && exploded.json["code"] == "payload_too_large", "\(exploded.json)")
        let laughs = """
            <?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
            <w:document><w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>
            """
        let dtd = try await upload("laughs.docx", try zip([("word/document.xml", Array(laughs.utf8))]))
        #expect(dtd.status.code == 422 && dtd.json["code"] == "document_unreadable", "\(dtd.json)")
        let notZip = try await upload("contract.docx", Array("PK not really".utf8))
        #expect(notZip.status.code == 422 && notZip.json["code"] == "document_unreadable", "\(notZip.json)")
        let noBody = try await upload("empty.docx", try zip([("word/styles.xml", Array("<w:styles/>".utf8))]))
        #expect(noBody.status.code == 422 && "\(noBody.json)".contains("word/document.xml"), "\(noBody.json)")
        #expect(try await world.client.send(.get, "/v1/collections/docs/documents").json["items"] == before)
    }

    /// A ZIP archive of `entries`, deflated.
    static func zip(_ entries: [(String, [UInt8])]) throws -> [UInt8] {
        let archive = try Archive(accessMode: .create)
        for (path, bytes) in entries {
            try archive.addEntry(
                with: path,
                type: .file,
                uncompressedSize: Int64(bytes.count),
                compressionMethod: .deflate
            ) { position, size in
                Data(bytes[Int(position)..<(Int(position) + size)])
            }
        }
        return Array(archive.data ?? Data())
    }

    /// The console's Knowledge pages: a collection's documents, one added from the form, a search from the form;
    /// a document's text is shown as text.
    static func consolePages(_ world: AgentWorld) async throws {
        let owner = try #require(world.client as? AuthenticatedClient)
        let browser = ConsoleTestBrowser(owner.anonymous)
        _ = try await browser.signIn(email: "owner@example.com", password: AuthenticatedClient.ownerPassword)
        #expect(try await browser.get("/knowledge").html.contains("No collections yet"))
        expectStatus(
            .created,
            try await world.client.send(.put, "/v1/collections/docs", json: #"{"embedding_model": "local/m2"}"#)
        )
        #expect(try await browser.get("/knowledge").html.contains("href=\"/knowledge/docs\""))
        let added = try await browser.post(
            "/knowledge/docs/documents",
            [("name", "faq"), ("format", "text"), ("text", "Refunds take <b>ten</b> days.")]
        )
        #expect(added.html.contains("<th scope=\"row\">faq</th>"), "\(added.html)")
        let found = try await browser.post("/knowledge/docs/search", [("query", "refunds"), ("mode", "text")])
        #expect(
            found.html.contains("id=\"search-results\"") && found.html.contains("&lt;b&gt;ten&lt;/b&gt;"),
            "\(found.html)"
        )
        #expect(!found.html.contains("<b>ten</b>"))
        // A folder's files at once: each added through the API, a file it cannot read refused with its reason.
        let word = try zip([
            (
                "word/document.xml",
                Array(
                    "<w:document><w:body><w:p><w:r><w:t>Warranty lasts two years.</w:t></w:r></w:p></w:body></w:document>"
                        .utf8
                )
            )
        ])
        let uploaded = try await browser.upload(
            "/knowledge/docs/files",
            files: [
                ("file", "notes.md", Array("# Notes\nShipping takes three days.".utf8)),
                ("file", "warranty.docx", word), ("file", "tool.exe", [0x4D, 0x5A, 0x00]),
            ]
        )
        #expect(uploaded.status == .ok && uploaded.html.contains("id=\"upload-outcome\""), "\(uploaded.status)")
        #expect(
            uploaded.html.contains("Added 2 document(s)") && uploaded.html.contains("tool.exe: "),
            "\(uploaded.html)"
        )
        #expect(uploaded.html.contains("<th scope=\"row\">warranty.docx</th>"))
        let warranty = try await browser.post("/knowledge/docs/search", [("query", "warranty"), ("mode", "text")])
        #expect(warranty.html.contains("Warranty lasts two years."), "\(warranty.html)")
        let forged = try await browser.upload(
            "/knowledge/docs/files",
            files: [("file", "forged.md", Array("x".utf8))],
            csrf: false
        )
        #expect(forged.status.code == 403 && !forged.html.contains("forged.md"), "\(forged.status)")
        let empty = try await browser.post("/knowledge/docs/documents", [("name", ""), ("text", "x")])
        #expect(empty.status.code == 422 && empty.html.contains("/name"), "\(empty.status)")
        #expect(try await browser.get("/knowledge/nothing").status == .notFound)
    }
}
