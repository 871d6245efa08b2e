// Parses and validates an AsyncAPI document with @asyncapi/parser (the AsyncAPI Initiative's
// parser: the specification's JSON Schema plus its semantic rules) and prints what it found as
// JSON: {valid, errors, warnings, channels: [{address, messages: [{name, payload}]}]}.
// Exit status 0 when valid, 1 when not, 2 when the file cannot be read.
// Usage: node validate.mjs docs/asyncapi.json
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const path = process.argv[2];
let text;
try {
  text = readFileSync(path, "utf8");
} catch (error) {
  console.error(`cannot read ${path}: ${error.message}`);
  process.exit(2);
}

const { document, diagnostics } = await new Parser().parse(text, { source: path });
const describe = (d) => ({ code: d.code, message: d.message, path: d.path.join(".") });
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map(describe);
const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).map(describe);

const channels = document
  ? document.channels().all().map((channel) => ({
      address: channel.address(),
      messages: channel.messages().all().map((message) => ({
        name: message.id(),
        payload: message.hasPayload() ? message.payload().json() : null,
      })),
    }))
  : [];

console.log(JSON.stringify({ valid: Boolean(document) && errors.length === 0, errors, warnings, channels }));
process.exit(document && errors.length === 0 ? 0 : 1);
