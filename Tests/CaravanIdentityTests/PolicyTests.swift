import CaravanIdentity
import Testing

@Suite("Access policy")
struct PolicyTests {
    @Test("Roles are ordered owner > admin > developer > viewer")
    func roleOrder() {
        #expect(Role.viewer < .developer && Role.developer < .admin && Role.admin < .owner)
    }

    @Test("Each permission is held by its least role and every role above it")
    func table() {
        #expect(AccessPolicy.allows(.viewer, .read))
        #expect(!AccessPolicy.allows(.viewer, .write))
        #expect(AccessPolicy.allows(.developer, .write))
        #expect(!AccessPolicy.allows(.developer, .manageSecrets))
        #expect(AccessPolicy.allows(.admin, .manageMembers))
        #expect(!AccessPolicy.allows(.admin, .deleteOrganization))
        #expect(AccessPolicy.allows(.owner, .deleteOrganization))
        for permission in Permission.allCases { #expect(AccessPolicy.allows(.owner, permission)) }
    }
}
