import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

/// The workflow editor: a definition with an error, shown beside its line, fixed, saved and started from the
/// workflow's page.
extension ConsoleBrowser {
    /// The definition typed into the editor; `needs` names the step on its sixth line.
    static func invoiceReminder(needs: String) -> String {
        """
        name: invoice-reminder
        description: Reminds a customer of an unpaid invoice and records that it did.
        input: {type: object, required: [customer, amount], properties: {customer: {type: string, description: Who owes it}, amount: {type: number}, urgent: {type: boolean}}}
        steps:
          - {id: compose, template: "Dear {{ input.customer }}, {{ input.amount }} EUR is still due."}
          - {id: send, needs: [\(needs)], template: "Sent: {{ steps.compose.output }}"}
          - {id: record, needs: [send], template: "Reminded {{ input.customer }}"}
        output: "{{ steps.send.output }}"
        """
    }

    /// Writes a workflow in `/workflows/new` with a step that needs a step that does not exist: the editor keeps
    /// the text and shows the error under that line. Fixed and saved, the workflow's page generates a form from
    /// its input schema, and a run started from it succeeds with what was typed.
    func editorShowsTheErrorBesideItsLine(_ api: ServerAPI) async throws {
        let flow = "editor"
        try await open("/workflows/new")
        let broken = Self.invoiceReminder(needs: "compse")
        try await type(broken, into: "#definition-yaml")
        try await click("form.editor button[type=submit]")
        try await session.waitUntil("\(flow): the editor shows the error", timeout: .seconds(10)) {
            try await !session.findAll(css: "#editor-problem").isEmpty
        }
        #expect(try await path() == "/workflows/new", "\(flow): the editor stays open")
        let marked = try await session.findAll(css: "ol.listing li.has-error")
        #expect(marked.count == 1, "\(flow): one line is marked (\(marked.count))")
        #expect(try await attribute("id", of: "ol.listing li.has-error") == "line-6", "\(flow): the sixth line")
        let line = try await text("ol.listing li.has-error")
        #expect(line.contains("needs: [compse]"), "\(flow): the marked line is the one at fault: \(line)")
        let message = try await text("ol.listing li.has-error .editor-error")
        #expect(!message.isEmpty, "\(flow): the error's message is under the line")
        #expect(try await text("#editor-problem").contains("Line 6"), "\(flow): the summary links the line")
        #expect(
            try await session.find(css: "#definition-yaml").property("value") == .string(broken),
            "\(flow): the editor keeps the text as typed"
        )
        try await screenshot("editor-error")
        #expect(try await api.send("GET", "/v1/workflows/invoice-reminder").status == 404, "\(flow): nothing saved")

        try await type(Self.invoiceReminder(needs: "compose"), into: "#definition-yaml")
        try await click("form.editor button[type=submit]")
        try await waitForPath("/workflows/invoice-reminder", flow)
        #expect(
            try await pageText().contains("Reminds a customer of an unpaid invoice"),
            "\(flow): the saved workflow's page shows its description"
        )
        // The form generated from the input schema: required fields first, in the schema's order.
        #expect(try await text("label[for=input-0]").contains("customer"), "\(flow): a field for the customer")
        #expect(try await attribute("type", of: "#input-1") == "number", "\(flow): a number field for the amount")
        #expect(try await attribute("type", of: "#input-2") == "checkbox", "\(flow): a checkbox for urgent")
        try await type("Fabrikam", into: "#input-0")
        try await type("1250.5", into: "#input-1")
        try await click("#input-2")
        try await click("#start-form button[type=submit]")
        try await session.waitUntil("\(flow): the run's page opens", timeout: .seconds(10)) {
            try await path().hasPrefix("/runs/run_")
        }
        try await waitForRunStatus("succeeded", flow)
        let runID = String(try await path().dropFirst("/runs/".count))
        let run = try await api.send("GET", "/v1/runs/\(runID)").json
        #expect(
            run["input"] == ["customer": "Fabrikam", "amount": 1250.5, "urgent": true],
            "\(flow): the run's input is what the form held: \(run["input"] ?? .null)"
        )
        #expect(
            try await text("#step-send").contains("Dear Fabrikam, 1250.5 EUR is still due."),
            "\(flow): the run page shows the step's output"
        )
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")

        try await open("/workflows/order-fulfilment")
        #expect(
            try await session.findAll(css: "table.runs tbody tr").count >= 1,
            "\(flow): the order workflow's page lists its runs"
        )
        try await screenshot("workflow")
    }
}
