// Turn one database change event ({table, op, row, old, id, at} from the postgres feed)
// into a short notification for a chat channel.
function main(params) {
  const op = (params.op || "change").toLowerCase();
  const table = params.table || "orders";
  const row = params.row || params.old || {};
  return { channel: params.channel, text: `${op} on ${table}` + (row.id !== undefined ? ` (id ${row.id})` : "") };
}
