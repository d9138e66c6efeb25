// Node-RED settings for the benchmark peer: loopback only, no editor, no credential file secret.
module.exports = {
    uiHost: "127.0.0.1",
    httpAdminRoot: false,
    flowFile: "flows.json",
    credentialSecret: false,
    logging: { console: { level: "info", metrics: false, audit: false } },
    editorTheme: { tours: false },
};
