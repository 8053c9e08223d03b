// The core scenario with the official JavaScript client (issue 12 §5): create an index,
// add documents, wait for the task, search with filter/sort/facets, both paginations,
// keys and a tenant token. Prints one JSON array of [step, answer] for the caller
// (tests/proxy/e2e/test_sdk_js.py) to compare between one node and Miroir.
// Usage: node scenario.mjs URL MASTER_KEY INDEX_UID
import { Meilisearch } from "meilisearch";
import { generateTenantToken } from "meilisearch/token";

const [url, masterKey, uid] = process.argv.slice(2);
const client = new Meilisearch({ host: url, apiKey: masterKey, timeout: 10_000 });
const wait = { timeout: 20_000, interval: 10 };
const steps = [];
const record = (step, answer) => steps.push([step, answer]);
const colors = ["red", "green", "blue"];
const words = ["amber", "birch", "cedar", "delta", "ember", "fjord"];
const documents = Array.from({ length: 40 }, (_, i) => ({
  id: i,
  title: `${words[i % 6]} ${words[(i * 7 + 1) % 6]}`,
  color: colors[i % 3],
  rank: (i * 37) % 40,
}));

record("createIndex", await client.createIndex(uid, { primaryKey: "id" }).waitTask(wait));
const index = client.index(uid);
const settings = { filterableAttributes: ["color", "rank"], sortableAttributes: ["rank"] };
record("updateSettings", await index.updateSettings(settings).waitTask(wait));
record("addDocuments", await index.addDocuments(documents).waitTask(wait));
record("getStats", await index.getStats());
const sort = ["rank:asc"];
record("search filter/sort/facets", await index.search("amber", {
  filter: "color = red OR color = blue", sort, facets: ["color"], limit: 5,
}));
for (const offset of [0, 5, 10]) {
  record(`search offset ${offset}`, await index.search("", { sort, offset, limit: 5 }));
}
for (const page of [1, 2, 9]) {
  record(`search page ${page}`, await index.search("", { sort, page, hitsPerPage: 6 }));
}
const keyUid = "0b7a3c1e-5d2f-4e8a-9c6b-2f1d3e4a5b6c";
const created = await client.createKey({
  uid: keyUid, name: "js", actions: ["search"], indexes: [uid], expiresAt: null,
});
// A key's value depends on the master key the nodes hold (a known difference).
const { key, ...shown } = created;
record("createKey", shown);
const token = await generateTenantToken({
  apiKey: key,
  apiKeyUid: keyUid,
  searchRules: { [uid]: { filter: "color = green" } },
  expiresAt: new Date(Date.UTC(2100, 0, 1)),
});
const tenant = new Meilisearch({ host: url, apiKey: token, timeout: 10_000 });
record("tenant search", await tenant.index(uid).search("", { sort, facets: ["color"] }));
let refused;
try {
  await tenant.index(uid).addDocuments([{ id: 99 }]);
} catch (error) {
  refused = { status: error.response?.status, code: error.cause?.code };
}
record("tenant write refused", refused);
await client.deleteKey(keyUid);
record("deleteIndex", await client.deleteIndex(uid).waitTask(wait));
process.stdout.write(JSON.stringify(steps));
