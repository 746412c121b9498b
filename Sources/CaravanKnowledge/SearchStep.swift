public import CaravanCore
public import CaravanEngine
public import CaravanWorkflow

/// `search: {collection, query, k?, mode?, filter?}`: a search of one of the organization's collections; the step's
/// output is `{items: [{document, document_id, position, chunk_id, score, text, metadata}]}`.
public struct SearchStep: StepExecutor {
    public static let name = "search"

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys.sorted() where !["collection", "query", "k", "mode", "filter"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of a search step"))
        }
        if object["collection"]?.stringValue.map(DefinitionParser.isValidWorkflowName) != true {
            errors.append(.init(pointer: pointer + "/collection", detail: "is required: the name of a collection"))
        }
        if object["query"]?.stringValue == nil {
            errors.append(.init(pointer: pointer + "/query", detail: "is required: the text to search for"))
        }
        if let value = object["k"], !(value.numberValue.map { $0 >= 1 && $0 <= 50 && $0 == $0.rounded() } ?? false) {
            if value.stringValue?.hasPrefix("{{") != true {
                errors.append(.init(pointer: pointer + "/k", detail: "must be an integer from 1 to 50"))
            }
        }
        if let mode = object["mode"]?.stringValue, SearchMode(rawValue: mode) == nil {
            errors.append(.init(pointer: pointer + "/mode", detail: "must be hybrid, vector or text"))
        }
        if let filter = object["filter"], filter.objectValue == nil {
            errors.append(.init(pointer: pointer + "/filter", detail: "must be an object of metadata keys and values"))
        }
        return errors
    }

    let knowledge: KnowledgeStore

    public init(knowledge: KnowledgeStore) {
        self.knowledge = knowledge
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        let query = config["query"]?.stringValue ?? ""
        guard !query.isEmpty, query.count <= 2_000 else {
            throw Failure(
                code: "invalid_input",
                message: "The query must hold 1 to 2,000 characters.",
                retryable: false
            )
        }
        do {
            let items = try await knowledge.search(
                orgID: context.orgID,
                collection: config["collection"]?.stringValue ?? "",
                query: query,
                k: max(1, min(50, Int(config["k"]?.numberValue ?? 5))),
                mode: config["mode"]?.stringValue.flatMap(SearchMode.init(rawValue:)) ?? .hybrid,
                filter: config["filter"]?.objectValue ?? [:],
                requestID: nil
            )
            return ["items": .array(items)]
        } catch let error as CaravanError {
            throw Failure(
                code: Failure.Code(rawValue: error.code.rawValue),
                message: error.detail,
                retryable: error.code.status >= 500
            )
        } catch {
            throw Failure(code: "search_failed", message: "\(error)", retryable: true)
        }
    }
}
