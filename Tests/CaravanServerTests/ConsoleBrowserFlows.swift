import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

/// The flows of a person's day in the console: an account with two-factor, a key, runs followed live, approvals,
/// a retry and an agent's trace.
extension ConsoleBrowser {
    /// Signs up through `/signup`, turns on two-factor on the account page with the secret it shows, signs out and
    /// back in with the password and a code. Returns one of the recovery codes the page showed.
    func signUpAndTurnOnTwoFactor() async throws -> String {
        let flow = "sign-up and two-factor"
        try await open("/signup")
        try await type(Self.email, into: "#email")
        try await type(Self.password, into: "#password")
        try await type("Northwind Logistics", into: "#organization")
        try await click("form[action='/signup'] button[type=submit]")
        try await waitForPath("/runs", flow)
        #expect(try await text(".empty").contains("No runs yet"), "\(flow): the new account's runs list is empty")
        #expect(try await attribute("hidden", of: "table.runs") != nil, "\(flow): the empty table is hidden")

        try await open("/settings/account")
        #expect(try await text("dl.facts").contains(Self.email), "\(flow): the account page names the account")
        try await click("form[action='/settings/account/mfa'] button")
        let secret = try await text("#totp-secret")
        #expect(secret.count >= 16, "\(flow): the page shows the TOTP secret (\(secret))")
        #expect(try await text("#totp-url").hasPrefix("otpauth://totp/"), "\(flow): and its otpauth address")
        let codes = try await session.findAll(css: "#recovery-codes li")
        #expect(codes.count >= 5, "\(flow): the page shows recovery codes (\(codes.count))")
        let recoveryCode = try #require(try await codes.first?.text(), "\(flow): no recovery code shown")
        try await type(totpCode(base32: secret, at: Date()), into: "#totp-code")
        try await click("form[action='/settings/account/mfa/verify'] button")
        try await waitForPath("/settings/account?done=mfa-on", flow)
        #expect(try await text("dl.facts .badge") == "on", "\(flow): the account page says two-factor is on")

        try await click("form[action='/logout'] button")
        try await waitForPath("/login", flow)
        // The password alone is no longer enough.
        try await type(Self.email, into: "#email")
        try await type(Self.password, into: "#password")
        try await click("form[action='/login'] button[type=submit]")
        try await session.waitUntil("\(flow): the sign-in page asks for the code") {
            try await session.find(css: ".problem", timeout: .milliseconds(200)).text().contains("two-factor")
        }
        #expect(try await path() == "/login", "\(flow): without the code the browser stays on the sign-in page")
        #expect(try await session.find(css: "#email").property("value") == .string(Self.email), "\(flow): email kept")
        try await type(Self.password, into: "#password")
        // The next time step's code: the one that turned two-factor on is used up.
        try await type(totpCode(base32: secret, at: Date().addingTimeInterval(30)), into: "#totp")
        try await click("form[action='/login'] button[type=submit]")
        try await waitForPath("/runs", flow)
        #expect(try await text("form[action='/logout'] button").contains(Self.email), "\(flow): signed in again")
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")
        return recoveryCode
    }

    /// Creates an owner key on the API-keys page, reads it from the page that shows it once, and returns the API
    /// as that key.
    func createAPIKeyInTheBrowser() async throws -> ServerAPI {
        let flow = "API key"
        try await open("/settings/api-keys")
        #expect(try await text(".empty").contains("No API keys yet"), "\(flow): the empty state shows")
        try await type("deploy pipeline", into: "#key-name")
        try await click("#key-role option[value=owner]")
        try await click("form[action='/settings/api-keys'] button[type=submit]")
        let key = try await text("#new-key")
        #expect(
            try await text("main").contains("will not be shown again"),
            "\(flow): the page warns it shows the key once"
        )
        let api = ServerAPI(base: base, bearer: key)
        let me = try await api.send("GET", "/v1/runs")
        #expect(me.status == 200, "\(flow): the key read from the page works: \(me.status) \(me.json)")
        try await open("/settings/api-keys")
        let row = try await text("table tbody tr")
        #expect(row.contains("deploy pipeline") && row.contains("owner"), "\(flow): the list shows the key: \(row)")
        #expect(!(try await pageText()).contains(key), "\(flow): the list never shows the key itself")
        return api
    }

    /// The definitions the flows use: a provider on the fake model, an agent whose tool needs approval, an
    /// approval workflow and a five-step order workflow whose carrier call fails once.
    func configureModelsAndWorkflows(_ api: ServerAPI) async throws {
        try await api.put("/v1/secrets/openai_key", json: ["value": .string(Self.modelKey)])
        try await api.put(
            "/v1/providers/openai",
            json: [
                "kind": "openai", "base_url": .string(model.baseURL), "api_key_secret": "openai_key",
                "models": ["gpt-4o-mini"], "timeout": "10s",
            ]
        )
        try await api.put("/v1/workflows/release-approval", yaml: Self.releaseApproval)
        try await api.put("/v1/workflows/order-fulfilment", yaml: orderFulfilment)
        try await api.put("/v1/agents/refund-assistant", yaml: refundAssistant)
    }

    static let releaseApproval = """
        name: release-approval
        description: Waits a moment for the build to settle, then asks a person before a release goes out.
        input: {type: object, required: [version], properties: {version: {type: string}}}
        steps:
          - {id: settle, sleep: 1s}
          - {id: sign_off, needs: [settle], approval: {message: "Ship {{ input.version }} to production?"}}
          - {id: announce, needs: [sign_off], template: "Released {{ input.version }}"}
        output: "{{ steps.announce.output }}"
        """

    var orderFulfilment: String {
        """
        name: order-fulfilment
        description: Reserves stock and books a carrier for each paid order, waits for the pickup, then tells the customer.
        input: {type: object, required: [order, email], properties: {order: {type: string}, email: {type: string}}}
        steps:
          - {id: validate, template: {order: "{{ input.order }}", email: "{{ input.email }}"}}
          - {id: reserve, needs: [validate], http: {method: POST, url: "\(http.baseURL)/count/reserve", body: {order: "{{ input.order }}"}}}
          - {id: book, needs: [reserve], http: {method: POST, url: "\(http.baseURL)/fail/1/409", body: {order: "{{ input.order }}"}}}
          - {id: pickup, needs: [book], sleep: 1s}
          - {id: notify, needs: [pickup], template: "Order {{ input.order }} ships today; we told {{ input.email }}."}
        output: "{{ steps.notify.output }}"
        """
    }

    var refundAssistant: String {
        """
        name: refund-assistant
        model: openai/gpt-4o-mini
        instructions: "You handle refund requests for Northwind. Refund at most what the order allows."
        max_turns: 4
        tools:
          - http: {name: issue_refund, method: POST, url: "\(http.baseURL)/count/refund", approval: true,
                   body: {order: "{{ args.order }}", amount: "{{ args.amount }}"},
                   parameters: {type: object, required: [order, amount], properties: {order: {type: string}, amount: {type: number}}}}
        """
    }
}
