import Testing

@testable import CaravanCatalog

@Suite("The ledger's arithmetic")
struct LedgerTests {
    static func charge(price: Int64, modelCost: Int64, outcome: String) -> LedgerCharge {
        LedgerCharge(
            key: "run:r",
            kind: "run",
            install: ListingInstall(
                id: "ins",
                orgID: "installer",
                listingID: "lst",
                version: 1,
                kind: .agent,
                name: "a",
                target: "agent:a",
                installedAt: 0,
                updatedAt: 0
            ),
            publisherOrgID: "publisher",
            runID: "r",
            outcome: outcome,
            milliseconds: 1,
            at: 0,
            priceMicros: price,
            modelCostMicros: modelCost
        )
    }

    @Test(arguments: [0, 1, 7, 999, 2_500, 1_000_000_000] as [Int64])
    func everyChargeBalances(price: Int64) {
        for fee in [0, 1, 1_000, 3_333, 10_000] {
            for modelCost in [0, 1, 123_456] as [Int64] {
                for outcome in ["succeeded", "failed"] {
                    let entries = Ledger.entries(
                        of: Self.charge(price: price, modelCost: modelCost, outcome: outcome),
                        feeBasisPoints: fee
                    )
                    #expect(entries.reduce(0) { $0 + $1.amountMicros } == 0, "price \(price) fee \(fee)")
                    let paid = entries.filter { $0.orgID == "installer" }.reduce(0) { $0 + $1.amountMicros }
                    #expect(paid == -((outcome == "succeeded" ? price : 0) + modelCost))
                    #expect(entries.allSatisfy { $0.amountMicros != 0 }, "no empty lines")
                }
            }
        }
    }

    @Test func thePublisherGetsThePriceLessTheFee() {
        let entries = Ledger.entries(
            of: Self.charge(price: 2_500, modelCost: 40, outcome: "succeeded"),
            feeBasisPoints: 1_000
        )
        #expect(
            entries == [
                LedgerEntry(orgID: "installer", account: "purchases", amountMicros: -2_500),
                LedgerEntry(orgID: "publisher", account: "sales", amountMicros: 2_250),
                LedgerEntry(orgID: nil, account: "platform_fees", amountMicros: 250),
                LedgerEntry(orgID: "installer", account: "model_costs", amountMicros: -40),
                LedgerEntry(orgID: nil, account: "model_providers", amountMicros: 40),
            ]
        )
    }

    @Test func months() {
        #expect(Ledger.month(of: 0) == "1970-01")
        #expect(Ledger.month(of: 1_798_761_599_999) == "2026-12")  // 2026-12-31T23:59:59.999Z
        #expect(Ledger.month(of: 1_798_761_600_000) == "2027-01")
        #expect(Ledger.month(of: 951_782_400_000) == "2000-02")  // 2000-02-29T00:00:00Z
        #expect(Ledger.isMonth("2026-12") && !Ledger.isMonth("2026-13") && !Ledger.isMonth("26-12"))
    }
}
