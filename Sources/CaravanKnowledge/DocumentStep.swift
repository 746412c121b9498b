public import CaravanAgents
public import CaravanCore
public import CaravanEngine
import CaravanWorkflow
import Foundation

/// `document: {template | source, format?, name?}`: renders a Mustache template (one stored with
/// `PUT /v1/templates/{name}`, or `source` inline) over the run's scope (`input`, `steps`, `run`) into Markdown or
/// HTML, or prints the HTML into a PDF (`format: pdf`, through `PDFRenderer`), and stores the result as an artifact
/// of the run. Its output is the artifact: `{id, name, content_type, size, sha256, url, …}`.
public struct DocumentStep: StepExecutor {
    public static let name = "document"
    /// The step renders its own templates over the run's scope: `{{ }}` in its config is Mustache, not the
    /// engine's.
    public static let interpolatesConfig = false
    /// It renders them over the run's scope, which the engine hands it.
    public static let readsRunScope = true

    /// What a document is made into.
    enum Output: String, CaseIterable {
        case markdown, html, pdf

        var contentType: String {
            switch self {
            case .markdown: "text/markdown; charset=utf-8"
            case .html: "text/html; charset=utf-8"
            case .pdf: "application/pdf"
            }
        }
    }

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys.sorted() where !["template", "source", "format", "name"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of a document step"))
        }
        let template = object["template"]?.stringValue
        let source = object["source"]?.stringValue
        if (template == nil) == (source == nil) {
            errors.append(
                .init(
                    pointer: pointer + "/template",
                    detail: "is required: the name of a stored template, or an inline `source` instead (one of the two)"
                )
            )
        }
        if let template, !DefinitionParser.isValidWorkflowName(template) {
            errors.append(.init(pointer: pointer + "/template", detail: "must name a template ([a-z0-9-]{1,64})"))
        }
        var output: Output?
        if let value = object["format"] {
            output = value.stringValue.flatMap(Output.init(rawValue:))
            if output == nil {
                errors.append(.init(pointer: pointer + "/format", detail: "must be markdown, html or pdf"))
            }
        }
        if let source {
            do throws(CaravanError) {
                _ = try ArtifactStore.parse(
                    source,
                    format: output == .markdown || output == nil ? .markdown : .html,
                    at: pointer + "/source"
                )
            } catch {
                errors += error.fieldErrors
            }
        }
        if let value = object["name"], !(value.stringValue.map { !$0.isEmpty && $0.count <= 200 } ?? false) {
            errors.append(.init(pointer: pointer + "/name", detail: "must be a file name of 1 to 200 characters"))
        }
        return errors
    }

    let artifacts: ArtifactStore
    let renderer: PDFRenderer

    public init(artifacts: ArtifactStore, renderer: PDFRenderer = PDFRenderer()) {
        self.artifacts = artifacts
        self.renderer = renderer
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        var output = config["format"]?.stringValue.flatMap(Output.init(rawValue:))
        let template: BoundedMustache
        do throws(CaravanError) {
            if let name = config["template"]?.stringValue {
                let stored: DocumentTemplate?
                do { stored = try await artifacts.template(orgID: context.orgID, name: name) } catch {
                    throw CaravanError(.unavailable, "The template could not be read: \(error)")
                }
                guard let stored else {
                    throw CaravanError(
                        CaravanError.Code("template_not_found", status: 404),
                        "The template '\(name)' does not exist."
                    )
                }
                if output == nil { output = stored.format == .html ? .html : .markdown }
                if output != .markdown && stored.format == .markdown {
                    throw CaravanError.validation(
                        "/format",
                        "the template '\(name)' is Markdown; HTML and PDF documents need an HTML template"
                    )
                }
                template = try ArtifactStore.parse(stored.source, format: stored.format, at: "/template")
            } else {
                template = try ArtifactStore.parse(
                    config["source"]?.stringValue ?? "",
                    format: output == .markdown || output == nil ? .markdown : .html,
                    at: "/source"
                )
            }
        } catch {
            throw Failure(
                code: Failure.Code(rawValue: error.code.rawValue),
                message: error.detail + (error.fieldErrors.first.map { " (\($0.pointer) \($0.detail))" } ?? ""),
                retryable: error.code.status >= 500
            )
        }
        let format = output ?? .markdown
        let scope = context.scope.objectValue ?? ["input": context.input]
        guard let rendered = template.render(scope, limit: ArtifactStore.maxArtifactBytes) else {
            throw Failure(
                code: Failure.Code(rawValue: CaravanError.Code.outputTooLarge.rawValue),
                message: "The document, rendered over this run, would pass \(ArtifactStore.maxArtifactBytes) bytes.",
                retryable: false
            )
        }
        var content = Array(rendered.utf8)
        if format == .pdf {
            do { content = try await renderer.pdf(fromHTML: rendered) } catch {
                throw Failure(
                    code: Failure.Code(rawValue: error.code.rawValue),
                    message: error.detail,
                    retryable: error.code.status >= 500 && error.code != .unsupportedMediaType
                )
            }
        }
        let fileName = fileName(config["name"]?.stringValue, scope: scope, step: context.stepID, format: format)
        do {
            return try await artifacts.put(
                orgID: context.orgID,
                runID: context.runID,
                step: context.stepID,
                name: fileName,
                contentType: format.contentType,
                content: content
            ).json
        } catch {
            throw Failure(
                code: "artifact_not_stored",
                message: "The artifact could not be stored: \(error)",
                retryable: true
            )
        }
    }

    /// The artifact's file name: `name` rendered over the scope (as text), else the step's id with the format's
    /// extension; path separators and control characters become `_`.
    func fileName(_ name: String?, scope: [String: JSONValue], step: String, format: Output) -> String {
        var rendered = "\(step).\(format == .markdown ? "md" : format.rawValue)"
        if let name, let template = try? BoundedMustache(name, escapesHTML: false, maxDepth: 4, maxTags: 16, at: ""),
            let text = template.render(scope, limit: 200), !text.isEmpty
        {
            rendered = text
        }
        return String(
            rendered.unicodeScalars.map {
                $0 == "/" || $0 == "\\" || $0.value < 0x20 || $0 == "\"" ? "_" : Character($0)
            }
            .prefix(200)
        )
    }
}

/// HTML printed to PDF by Chromium (Debian's `chromium` package) in headless mode, as a child process: the page in
/// a temporary directory of its own with a content security policy that allows no script, no frame and nothing
/// fetched but inline styles and `data:` images, every network request sent to a closed port, killed at a deadline.
public struct PDFRenderer: Sendable {
    public var timeout: Duration

    public init(timeout: Duration = .seconds(60)) {
        self.timeout = timeout
    }

    /// Where Chromium is, when installed.
    public static var executable: String? {
        ChildProcess.find(["/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser"])
    }

    static let policy =
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:\">"

    /// - Throws: `unsupported_media_type` (Chromium is not installed: naming the package), `document_unrenderable`
    ///   (Chromium failed or passed its deadline), `output_too_large`.
    public func pdf(fromHTML html: String) async throws(CaravanError) -> [UInt8] {
        guard let executable = Self.executable else {
            throw CaravanError(
                .unsupportedMediaType,
                "Printing documents to PDF needs Chromium, which this server does not have: install Debian's chromium (apt install chromium)."
            )
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "caravan-pdf-\(UUID().uuidString)"
        )
        let page = directory.appendingPathComponent("document.html")
        let pdf = directory.appendingPathComponent("document.pdf")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try Data(("<!doctype html>" + Self.policy + "<meta charset=\"utf-8\">" + html).utf8).write(to: page)
        } catch {
            throw CaravanError(.unavailable, "The page could not be written to a temporary file.")
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        var arguments = [
            "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions", "--no-pdf-header-footer",
            "--user-data-dir=" + directory.appendingPathComponent("profile").path,
            "--proxy-server=socks5://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
            "--print-to-pdf=" + pdf.path, page.absoluteString,
        ]
        // Chromium's sandbox cannot start as root; the page allows nothing to run or be fetched either way.
        if getuid() == 0 { arguments.insert("--no-sandbox", at: 0) }
        let outcome = await ChildProcess(
            executable: executable,
            arguments: arguments,
            timeout: timeout,
            maxOutputBytes: 1 << 20
        ).run()
        let failed = CaravanError.Code("document_unrenderable", status: 502)
        switch outcome {
        case .output:
            guard let bytes = try? Data(contentsOf: pdf), bytes.starts(with: Array("%PDF".utf8)) else {
                throw CaravanError(failed, "Chromium wrote no PDF.")
            }
            guard bytes.count <= ArtifactStore.maxArtifactBytes else {
                throw CaravanError(.outputTooLarge, "The PDF is larger than \(ArtifactStore.maxArtifactBytes) bytes.")
            }
            return Array(bytes)
        case .timedOut: throw CaravanError(failed, "Chromium did not print the PDF within its time.")
        case .tooLarge, .failed: throw CaravanError(failed, "Chromium could not print the PDF.")
        }
    }
}
