// Turn one database change event into a short notification for a chat channel.
function main(params) {
  const op = (params.operation || params.op || "change").toLowerCase();
  const table = params.table || "orders";
  const row = params.new || params.old || {};
  return { channel: params.channel, text: `${op} on ${table}` + (row.id !== undefined ? ` (id ${row.id})` : "") };
}
