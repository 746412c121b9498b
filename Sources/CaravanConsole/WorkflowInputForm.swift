import CaravanCore
import Foundation

/// The "Start a run" form of a workflow, generated from the JSON Schema its definition declares under `input`:
/// one labelled field per property (text, number, checkbox, a select for an `enum`, JSON for the rest), or one
/// JSON field for the whole input when there is no schema with properties. Reads the submitted form back into the
/// run's input.
struct WorkflowInputForm {
    /// How one property is entered.
    enum Control: String {
        case text, number, integer, checkbox, select, json
    }

    /// One property of the input as a field of the form.
    struct Field {
        var name: String
        var control: Control
        var required: Bool
        var description: String
        /// For a select: each value of the `enum` as JSON text, and how it is shown.
        var options: [(value: String, label: String)]
        /// A default from the schema, as the field shows it.
        var defaultValue: String
    }

    /// The fields, or `nil` when the input is entered as one JSON value.
    let fields: [Field]?

    init(schema: JSONValue?) {
        guard let properties = schema?["properties"]?.objectValue, !properties.isEmpty else {
            fields = nil
            return
        }
        let required = (schema?["required"]?.arrayValue ?? []).compactMap(\.stringValue)
        // Required properties first, in the schema's order, then the others by name.
        let names =
            required.filter { properties[$0] != nil }
            + properties.keys.filter { !required.contains($0) }.sorted()
        fields = names.map { name in
            let property = properties[name] ?? .object([:])
            return Self.field(name: name, property: property, required: required.contains(name))
        }
    }

    private static func field(name: String, property: JSONValue, required: Bool) -> Field {
        let type: String? =
            property["type"]?.stringValue
            ?? property["type"]?.arrayValue?.compactMap(\.stringValue).first { $0 != "null" }
        var control: Control
        var options: [(value: String, label: String)] = []
        if let values = property["enum"]?.arrayValue, !values.isEmpty {
            control = .select
            options = values.map { value in
                var json = ""
                value.write(to: &json)
                return (json, value.stringValue ?? json)
            }
        } else {
            switch type {
            case "string": control = .text
            case "number": control = .number
            case "integer": control = .integer
            case "boolean": control = .checkbox
            default: control = .json
            }
        }
        var defaultValue = ""
        if let value = property["default"] {
            switch (control, value) {
            case (.text, .string(let text)): defaultValue = text
            case (.checkbox, .bool(let flag)): defaultValue = flag ? "true" : ""
            default: value.write(to: &defaultValue)
            }
        }
        return Field(
            name: name,
            control: control,
            required: required,
            description: property["description"]?.stringValue ?? "",
            options: options,
            defaultValue: defaultValue
        )
    }

    /// The form field that holds property `name`.
    static func formName(_ property: String) -> String { "input." + property }

    /// A property's pointer in the run's input, as the API's errors name it.
    static func pointer(_ property: String) -> String {
        "/input/" + property.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }

    /// The fields as the template shows them, with what the user typed (`typed`, after a refused start) or the
    /// schema's defaults, and the API's errors beside the field they are about.
    func view(typed: ConsoleForm?, problem: ConsoleProblem?) -> [String: Any] {
        let errors = problem?.errors ?? []
        guard let fields else {
            return [
                "fields": false, "hasJSON": true, "json": typed?["input"] ?? "{}",
                "jsonErrors": errors.map(\.detail), "hasJSONErrors": !errors.isEmpty,
            ]
        }
        let views = fields.enumerated().map { index, field -> [String: Any] in
            let value = typed.map { $0[Self.formName(field.name)] ?? "" } ?? field.defaultValue
            let messages = errors.filter { $0.pointer == Self.pointer(field.name) }.map(\.detail)
            return [
                "id": "input-\(index)",
                "formName": Self.formName(field.name),
                "label": field.name,
                "description": field.description.isEmpty ? false : field.description,
                "required": field.required,
                "isText": field.control == .text,
                "isNumber": field.control == .number || field.control == .integer,
                "step": field.control == .integer ? "1" : "any",
                "isCheckbox": field.control == .checkbox,
                "isSelect": field.control == .select,
                "isJSON": field.control == .json,
                "value": value,
                "checked": value == "true",
                "options": field.options.map { option -> [String: Any] in
                    ["value": option.value, "label": option.label, "selected": option.value == value]
                },
                "errors": messages,
                "hasErrors": !messages.isEmpty,
            ]
        }
        return ["fields": views, "hasJSON": false, "json": "", "jsonErrors": [String](), "hasJSONErrors": false]
    }

    /// The run's input from a submitted form.
    /// - Returns: the input, or the problems found (each with the pointer of its field) before asking the API.
    func input(from form: ConsoleForm) -> Result<JSONValue, ConsoleProblem> {
        guard let fields else {
            let text = form.trimmed("input") ?? "{}"
            do throws(CaravanError) {
                return .success(try JSONValue(parsing: Array(text.utf8)))
            } catch {
                return .failure(Self.invalid([("/input", "is not valid JSON: \(error.detail)")]))
            }
        }
        var input: [String: JSONValue] = [:]
        var problems: [(pointer: String, detail: String)] = []
        for field in fields {
            let pointer = Self.pointer(field.name)
            let raw = form[Self.formName(field.name)] ?? ""
            let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            switch field.control {
            case .checkbox:
                input[field.name] = .bool(raw == "true")
                continue
            case .text:
                // Text is sent as typed; an empty optional field is left out.
                if raw.isEmpty && !field.required { continue }
                input[field.name] = .string(raw)
                continue
            default:
                break
            }
            if text.isEmpty {
                if field.required { problems.append((pointer, "is required")) }
                continue
            }
            switch field.control {
            case .integer:
                if let number = Int64(text) {
                    input[field.name] = .int(number)
                } else {
                    problems.append((pointer, "must be a whole number"))
                }
            case .number:
                if let number = Int64(text) {
                    input[field.name] = .int(number)
                } else if let number = Double(text), number.isFinite {
                    input[field.name] = .double(number)
                } else {
                    problems.append((pointer, "must be a number"))
                }
            default:
                do throws(CaravanError) {
                    input[field.name] = try JSONValue(parsing: Array(text.utf8))
                } catch {
                    problems.append((pointer, "is not valid JSON: \(error.detail)"))
                }
            }
        }
        return problems.isEmpty ? .success(.object(input)) : .failure(Self.invalid(problems))
    }

    private static func invalid(_ problems: [(pointer: String, detail: String)]) -> ConsoleProblem {
        ConsoleProblem(
            status: 422,
            code: "validation_failed",
            detail: "Check the run's input.",
            pointer: problems.first?.pointer,
            errors: problems
        )
    }
}
