import { Body, Controller, Get, Inject, Param, Patch, Post, Query } from '@nestjs/common';
import {
  AccessRpc,
  CreateUserBodySchema,
  IdParamSchema,
  ListUsersQuerySchema,
  PageQuerySchema,
  UpdateUserBodySchema,
  UserSchema,
  cursorPageSchema,
  offsetPageSchema,
  toPageRequest,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { z } from 'zod';
import { Caller } from '../auth/principal';
import { ApiRoute, parse } from '../http/api-route';

@Controller('api/v1/users')
export class UsersController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary: 'Create a user (admin)',
    tags: ['users'],
    body: CreateUserBodySchema,
    status: 201,
    response: UserSchema,
    errors: ['USERNAME_TAKEN'],
    admin: true,
  })
  create(@Caller() actor: Principal, @Body() body: unknown) {
    return this.rpc.call(AccessRpc.createUser, { actor, ...parse(CreateUserBodySchema, body, 'body') });
  }

  @Get()
  @ApiRoute({
    summary: 'List users (admin); `q` matches the username',
    tags: ['users'],
    query: [ListUsersQuerySchema, PageQuerySchema],
    status: 200,
    response: z.union([cursorPageSchema(UserSchema), offsetPageSchema(UserSchema)]),
    admin: true,
  })
  list(@Caller() actor: Principal, @Query() query: unknown) {
    const filters = parse(ListUsersQuerySchema, query, 'query');
    const page = toPageRequest(parse(PageQuerySchema, query, 'query'));
    return this.rpc.call(AccessRpc.listUsers, { actor, ...filters, page });
  }

  @Patch(':id')
  @ApiRoute({
    summary: 'Change a user (admin); a disabled user cannot log in and their tokens stop working',
    tags: ['users'],
    params: IdParamSchema,
    body: UpdateUserBodySchema,
    status: 200,
    response: UserSchema,
    errors: ['NOT_FOUND', 'CONFLICT'],
    admin: true,
  })
  update(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(AccessRpc.updateUser, { actor, id, patch: parse(UpdateUserBodySchema, body, 'body') });
  }
}
