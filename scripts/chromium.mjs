// Finds a Chromium for the report tests (test/helpers/browser.ts) and, on Debian/Ubuntu, installs it:
// playwright-core brings no browser of its own, and its own download needs a host this machine cannot reach.
import { spawnSync } from "node:child_process";
import fs from "node:fs";

/** Where Chromium lives on Debian (package chromium), Ubuntu and Chrome installs; W2S_CHROMIUM overrides. */
export const CHROMIUM_CANDIDATES = [
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome-stable",
  "/usr/bin/google-chrome",
  "/snap/bin/chromium",
];

/** The first executable Chromium, or undefined. An explicit W2S_CHROMIUM is the only candidate. */
export function findChromium() {
  const list = process.env.W2S_CHROMIUM ? [process.env.W2S_CHROMIUM] : CHROMIUM_CANDIDATES;
  return list.find((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

/** The command that installs Debian's chromium here, or undefined when this user cannot run apt-get. */
function aptCommand() {
  if (spawnSync("sh", ["-c", "command -v apt-get"], { encoding: "utf8" }).status !== 0) return undefined;
  if (typeof process.getuid === "function" && process.getuid() === 0) return [];
  if (spawnSync("sudo", ["-n", "true"], { stdio: "ignore" }).status === 0) return ["sudo", "-n"];
  return undefined;
}

/**
 * Installs Debian's chromium with apt-get when it is missing and this user may (root, or sudo without a
 * password); returns its path, or throws an Error whose message is the one command the user should run.
 */
export function ensureChromium(log = (line) => console.error(line)) {
  const found = findChromium();
  if (found) return found;
  const manual = "sudo apt-get install -y --no-install-recommends chromium   (or set W2S_CHROMIUM=/path/to/chromium)";
  if (process.env.W2S_CHROMIUM) throw new Error(`W2S_CHROMIUM=${process.env.W2S_CHROMIUM} is not an executable file`);
  const prefix = aptCommand();
  if (!prefix) throw new Error(`the report tests need Chromium, which is not installed; run:\n  ${manual}`);
  const run = (args) => {
    const cmd = [...prefix, ...args];
    log(`weak2strong tests: ${cmd.join(" ")}`);
    const r = spawnSync(cmd[0], cmd.slice(1), {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    return r.status === 0;
  };
  log("weak2strong tests: Chromium is missing; installing Debian's chromium (once) for the report tests");
  if (!run(["apt-get", "update"]) || !run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"])) {
    throw new Error(`installing Chromium with apt-get failed; run:\n  ${manual}`);
  }
  const installed = findChromium();
  if (!installed) throw new Error(`apt-get installed chromium but no executable was found in ${CHROMIUM_CANDIDATES.join(", ")}`);
  return installed;
}
