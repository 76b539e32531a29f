import { Migration } from '@mikro-orm/migrations';

export class Migration20261130104500 extends Migration {
  override name = 'Migration20261130104500';

  override up(): void | Promise<void> {
    this.addSql(`alter table "messages" add "size_bytes" int not null default 0;`);
    // Existing rows: their JSON as PostgreSQL writes it, which is never shorter than the
    // service's (it adds spaces, and writes numbers and timestamps at least as long).
    this.addSql(
      `update "messages" set "size_bytes" = octet_length(jsonb_build_object(
         'id', "id", 'session_id', "session_id", 'seq', "seq", 'role', "role", 'content', "content",
         'tokens', "tokens", 'metadata', "metadata", 'media', "media", 'feedback', 'dislike', 'copied', false,
         'sensitive_status', 'violation', 'client_message_id', "client_message_id", 'created_at', "created_at")::text);`,
    );
    this.addSql(`alter table "messages" alter column "size_bytes" drop default;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "messages" drop column "size_bytes";`);
  }
}
