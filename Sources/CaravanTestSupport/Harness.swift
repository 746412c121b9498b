/// The tests use the harness (the process, databases, fake providers) through this module.
@_exported import CaravanHarness
