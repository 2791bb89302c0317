// Run by proto/check.sh against the JavaScript protoc-gen-es generates from proto/: every method
// of every maru service must carry its (maru.v1.policy) option, with no unspecified field, as a
// browser client sees it; EventService.CheckIn is a write that requires a caller.
import { readdirSync } from "node:fs";
import { hasOption, getOption } from "@bufbuild/protobuf";

const dir = new URL("./gen/maru/v1/", import.meta.url);
const { policy, RateClass, Caller } = await import(new URL("policy_pb.js", dir));
const missing = [];
let methods = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith("_pb.js"))) {
  const mod = await import(new URL(file, dir));
  for (const service of Object.values(mod).filter((v) => v?.kind === "service")) {
    for (const method of service.methods) {
      methods++;
      const p = hasOption(method, policy) ? getOption(method, policy) : undefined;
      if (!p || p.rateClass === RateClass.UNSPECIFIED || p.caller === Caller.UNSPECIFIED) {
        missing.push(`${service.typeName}/${method.name}`);
      }
    }
  }
}
if (methods === 0) throw new Error("no service methods found in the generated code");
if (missing.length) throw new Error(`methods without a complete policy: ${missing.join(", ")}`);
const { EventService } = await import(new URL("events_pb.js", dir));
const checkIn = getOption(EventService.method.checkIn, policy);
if (checkIn.rateClass !== RateClass.WRITE || checkIn.caller !== Caller.REQUIRED) {
  throw new Error(`EventService.CheckIn policy: ${JSON.stringify(checkIn)}`);
}
console.log(`generated TypeScript/JavaScript: ${methods} methods, each with its policy`);
