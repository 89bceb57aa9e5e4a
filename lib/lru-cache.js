'use strict'
// Coming: see the issue for this primitive. The entry point loads and exports nothing yet.
module.exports = {}
