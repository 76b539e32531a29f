import { AuthController } from './auth/auth.controller';
import { BotsController } from './bots/bots.controller';
import { ConsoleController } from './console/console.controller';
import { DocsController } from './docs/docs.controller';
import { GroupsController } from './groups/groups.controller';
import { ConversationController } from './messages/conversation.controller';
import { MessagesController } from './messages/messages.controller';
import { RolesController } from './roles/roles.controller';
import { SessionsController } from './sessions/sessions.controller';
import { UsageController } from './usage/usage.controller';
import { UsersController } from './users/users.controller';

/** Every controller of the gateway: the module mounts them, and the OpenAPI document describes their routes. */
export const GATEWAY_CONTROLLERS = [
  AuthController,
  UsersController,
  GroupsController,
  RolesController,
  BotsController,
  SessionsController,
  MessagesController,
  ConversationController,
  UsageController,
  DocsController,
  ConsoleController,
];
