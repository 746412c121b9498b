public import CaravanCore
public import CaravanEngine
import CaravanStorage
import CaravanWorkflow
import Synchronization

/// Documents enter a collection through a run of the engine: accepting one writes it (status `ingesting`) and its
/// extracted text in the transaction that creates its run of the reserved workflow `knowledge:ingest`, whose one
/// `ingest` step cuts, embeds and indexes it a group of chunks at a time. So ingestion has what every run has:
/// events (`document.progress` every 1,024 chunks or so), cancel, retry, leases, and resumption after a crash without
/// embedding again the chunks already stored.
public final class DocumentIngestion: Sendable {
    /// The reserved workflow whose runs ingest documents.
    public static let workflow = "knowledge:ingest"

    let knowledge: KnowledgeStore
    let engine: Engine
    /// The organizations whose `knowledge:ingest` workflow this node has stored since it started.
    private let prepared = Mutex<Set<String>>([])

    public init(knowledge: KnowledgeStore, engine: Engine) {
        self.knowledge = knowledge
        self.engine = engine
    }

    /// Accepts a document and starts its ingestion run; waits up to `wait` for it.
    /// - Returns: the document, and whether it is indexed (else still being ingested: follow its `run_id`).
    /// - Throws: what `KnowledgeStore.accept` throws; the run's failure when it failed within `wait` (the document
    ///   is then kept as `failed`, and `POST /v1/runs/{id}/retry` resumes it).
    public func add(
        orgID: String,
        collection: String,
        document: String,
        text: String,
        format: DocumentFormat,
        metadata: JSONValue,
        wait: Duration
    ) async throws -> (document: JSONValue, indexed: Bool) {
        let accepted = try await knowledge.accept(
            orgID: orgID,
            collection: collection,
            document: document,
            text: text,
            format: format,
            metadata: metadata
        )
        try await prepare(orgID: orgID)
        let companion = RunCompanion(accepted) { rows, executor in try await KnowledgeStore.write(rows, in: executor) }
        var (run, _) = try await engine.startRun(
            orgID: orgID,
            workflow: Self.workflow,
            input: ["document": .string(accepted.id), "collection": .string(collection), "name": .string(document)],
            idempotencyKey: nil,
            requestHash: nil,
            companion: companion
        )
        if wait > .zero, let finished = try await engine.waitForRun(orgID: orgID, id: run.id, timeout: wait) {
            run = finished
        }
        if run.status == .failed, let failure = run.error {
            throw CaravanError(
                CaravanError.Code(failure.code, status: Self.status(ofFailure: failure.code)),
                "The document was accepted but could not be ingested: \(failure.message) It is kept as failed; POST /v1/runs/\(run.id)/retry resumes it."
            )
        }
        guard
            let stored = try await self.document(
                orgID: orgID,
                collection: collection,
                id: accepted.id,
                withChunks: false
            )
        else {
            throw CaravanError(.conflict, "The document was replaced or deleted while it was ingested.")
        }
        var json = stored.objectValue ?? [:]
        if let embedded = run.output?["embedded"] { json["embedded"] = embedded }
        return (.object(json), json["status"] == "indexed")
    }

    /// A document (with its chunks unless `withChunks` is false); one not yet indexed says how its run stands
    /// (`ingesting`, `failed` with the error, or `cancelled`).
    public func document(
        orgID: String,
        collection: String,
        id: String,
        withChunks: Bool = true
    ) async throws
        -> JSONValue?
    {
        guard
            case .object(var json)? = try await knowledge.document(
                orgID: orgID,
                collection: collection,
                id: id,
                withChunks: withChunks
            )
        else { return nil }
        if json["status"] != "indexed", let runID = json["run_id"]?.stringValue,
            let run = try await engine.run(orgID: orgID, id: runID)
        {
            switch run.status {
            case .failed:
                json["status"] = "failed"
                json["error"] = ["code": .string(run.error?.code ?? ""), "message": .string(run.error?.message ?? "")]
            case .cancelled: json["status"] = "cancelled"
            default: break
            }
        }
        return .object(json)
    }

    /// Deletes a document, cancelling its ingestion run if it is still going.
    public func delete(orgID: String, collection: String, id: String) async throws -> Bool {
        let runID = try await knowledge.document(orgID: orgID, collection: collection, id: id, withChunks: false)?[
            "run_id"
        ]?.stringValue
        guard try await knowledge.deleteDocument(orgID: orgID, collection: collection, id: id) else { return false }
        if let runID, let run = try await engine.run(orgID: orgID, id: runID), !run.status.isTerminal {
            _ = try? await engine.cancel(orgID: orgID, id: runID)
        }
        return true
    }

    /// Stores the organization's `knowledge:ingest` workflow (an unchanged definition keeps its version).
    private func prepare(orgID: String) async throws {
        guard !prepared.withLock({ $0.contains(orgID) }) else { return }
        let definition = try DefinitionParser.validate(
            [
                "name": .string(Self.workflow),
                "description": "Cuts, embeds and indexes a document added to a knowledge collection.",
                "steps": [
                    [
                        "id": "ingest", "timeout": "1h",
                        "retry": ["max_attempts": 5, "initial_interval": "2s", "backoff": 2.0, "max_interval": "60s"],
                        IngestStep.name: ["document": "{{ input.document }}"],
                    ]
                ],
                "output": "{{ steps.ingest.output }}",
            ],
            nameFromPath: nil,
            kinds: engine.kinds
        )
        do {
            _ = try await engine.workflows.put(orgID: orgID, definition: definition)
        } catch let error as StorageError where error.code == .conflict {
            // Another request, here or on another node, stored it at the same moment.
            guard try await engine.workflows.get(orgID: orgID, name: Self.workflow) != nil else { throw error }
        }
        prepared.withLock { _ = $0.insert(orgID) }
    }

    /// The HTTP status of a failed ingestion: the budget's, the rate limit's, else the model's failure (502).
    static func status(ofFailure code: String) -> Int {
        switch code {
        case "budget_exceeded": 402
        case "rate_limited": 429
        case "payload_too_large": 413
        default: 502
        }
    }
}

/// `ingest: {document}`: the one step of a `knowledge:ingest` run (see `DocumentIngestion`).
public struct IngestStep: StepExecutor {
    public static let name = "ingest"
    public static let keepsJournal = true

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        config["document"]?.stringValue == nil
            ? [.init(pointer: pointer + "/document", detail: "is required: the id of a document to ingest")] : []
    }

    let knowledge: KnowledgeStore

    public init(knowledge: KnowledgeStore) {
        self.knowledge = knowledge
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        guard context.workflow == DocumentIngestion.workflow else {
            throw Failure(
                code: "invalid_step",
                message: "ingest steps run only in the runs that add documents to collections.",
                retryable: false
            )
        }
        let id = config["document"]?.stringValue ?? ""
        let journal = context.journal
        do {
            return try await knowledge.ingest(orgID: context.orgID, documentID: id, runID: context.runID) {
                stored,
                total in
                try await journal?.record(
                    "stored:\(stored)",
                    value: .int(Int64(stored)),
                    events: [
                        (
                            "document.progress",
                            [
                                "document": .string(id), "chunks_stored": .int(Int64(stored)),
                                "chunks": .int(Int64(total)),
                            ]
                        )
                    ]
                )
            }
        } catch let failure as Failure {
            throw failure
        } catch let error as CaravanError {
            throw Failure(
                code: Failure.Code(rawValue: error.code.rawValue),
                message: error.detail,
                retryable: error.code.status >= 500 || error.code.status == 429
            )
        } catch is CancellationError {
            throw Failure(code: "cancelled", message: "The ingestion was cancelled.", retryable: false)
        } catch {
            throw Failure(code: "ingestion_failed", message: "\(error)", retryable: true)
        }
    }
}
